"""Python mirrors of the contract's structs and enums, and the commitments it checks.

Money is always an int in wei; hashes are 32-byte `bytes`. The commitment functions reproduce
`EdgeTune.updateCommitment` / `voteCommitment` bit for bit, so an agent can commit without a call.
"""

from dataclasses import astuple, dataclass, field
from enum import IntEnum

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from edgetune.errors import EdgetuneError

BPS = 10_000
SCORE_SCALE = 1_000_000  # scores travel as int32 millionths
_BALLOT_TYPE = "(uint256,uint256,bytes32,string,bool,int32[])"


class Phase(IntEnum):
    NONE = 0
    REGISTRATION = 1
    UPDATE_COMMIT = 2
    UPDATE_REVEAL = 3
    VOTE_COMMIT = 4
    VOTE_REVEAL = 5
    FINALIZABLE = 6
    FINISHED = 7
    CANCELLED = 8


class SlashReason(IntEnum):
    UPDATE_NOT_REVEALED = 0
    VOTE_NOT_REVEALED = 1
    INVALID_UPDATE = 2


class RewardKind(IntEnum):
    TRAINER = 0
    VALIDATOR = 1


class InvalidTaskConfig(EdgetuneError):
    """A task configuration that the contract would refuse, caught before sending it."""


@dataclass(frozen=True)
class TaskConfig:
    """Everything fixed when a task is created (see docs/protocol.md for each default's reason)."""

    base_model_hash: bytes
    adapter_spec_hash: bytes
    initial_global_hash: bytes
    base_model_uri: str
    base_model_cid: str
    initial_global_cid: str
    rounds: int = 3
    max_edges: int = 8
    quorum_bps: int = 6666  # two of three equal stakes (6666.7 bps) must be enough
    min_turnout_bps: int = 5000
    validator_share_bps: int = 2000
    registration_blocks: int = 50
    commit_blocks: int = 40
    reveal_blocks: int = 20
    vote_commit_blocks: int = 40
    vote_reveal_blocks: int = 20
    max_samples: int = 100_000
    harm_tolerance: int = 50_000  # 0.05 in score millionths
    min_stake: int = 10**17
    slash_non_reveal: int = 5 * 10**16
    slash_invalid: int = 10**17

    def __post_init__(self) -> None:
        for name in ("base_model_hash", "adapter_spec_hash", "initial_global_hash"):
            if len(getattr(self, name)) != 32:
                raise InvalidTaskConfig(f"{name} must be 32 bytes, got {len(getattr(self, name))}")
        if not 0 < self.rounds < 2**16:
            raise InvalidTaskConfig(f"rounds must be in 1..65535, got {self.rounds}")
        if not BPS // 2 < self.quorum_bps <= BPS:
            raise InvalidTaskConfig(f"quorum_bps must be in 5001..10000, got {self.quorum_bps}")
        if self.slash_non_reveal > self.min_stake or self.slash_invalid > self.min_stake:
            raise InvalidTaskConfig("slash amounts must not exceed min_stake")

    def as_tuple(self) -> tuple:
        """The ABI tuple `createTask` takes (field order matches the Solidity struct)."""
        return astuple(self)

    @classmethod
    def from_tuple(cls, values: tuple) -> "TaskConfig":
        return cls(*values)


@dataclass(frozen=True)
class Ballot:
    """A validator's vote: which revealed updates are valid and included, the aggregate it
    computed, whether it approves, and its Shapley score of each update in millionths."""

    valid_mask: int
    included_mask: int
    aggregate_hash: bytes
    aggregate_cid: str
    approve: bool
    scores: tuple[int, ...] = field(default_factory=tuple)

    def as_tuple(self) -> tuple:
        scores = list(self.scores)
        return (
            self.valid_mask,
            self.included_mask,
            self.aggregate_hash,
            self.aggregate_cid,
            self.approve,
            scores,
        )

    def candidate(self) -> bytes:
        """The key the contract groups approving stake by."""
        return keccak(
            encode(
                ["uint256", "uint256", "bytes32"],
                [self.valid_mask, self.included_mask, self.aggregate_hash],
            )
        )


@dataclass(frozen=True)
class Status:
    """One poll of the chain: the task's phase and counts, and one edge's own record."""

    phase: Phase
    round: int
    phase_end: int
    active_edges: int
    commits: int
    reveals: int
    vote_commits: int
    vote_reveals: int
    global_hash: bytes
    global_cid: str
    registered: bool
    active: bool
    stake: int
    update_committed: bool
    update_revealed: bool
    vote_committed: bool
    vote_revealed: bool
    owed: int

    @classmethod
    def from_tuple(cls, values: tuple) -> "Status":
        return cls(Phase(values[0]), *values[1:])


@dataclass(frozen=True)
class RevealedUpdate:
    edge: str
    update_hash: bytes
    cid: str
    samples: int


@dataclass(frozen=True)
class TaskFunds:
    owner: str
    pool: int
    carry: int
    reward_per_round: int
    active_stake: int


def update_commitment(
    chain_id: int,
    contract: str,
    task_id: int,
    round_: int,
    edge: str,
    update_hash: bytes,
    cid: str,
    samples: int,
    salt: bytes,
) -> bytes:
    """keccak256(abi.encode(chainid, contract, taskId, round, edge, hash, cid, samples, salt))."""
    types = ["uint256", "address", "uint256", "uint16", "address", "bytes32", "string", "uint32"]
    values = [chain_id, _address(contract), task_id, round_, _address(edge), update_hash, cid]
    return keccak(encode([*types, "bytes32"], [*values, samples, salt]))


def vote_commitment(
    chain_id: int, contract: str, task_id: int, round_: int, edge: str, ballot: Ballot, salt: bytes
) -> bytes:
    """keccak256(abi.encode(chainid, contract, taskId, round, edge, ballot, salt))."""
    types = ["uint256", "address", "uint256", "uint16", "address", _BALLOT_TYPE, "bytes32"]
    values = [chain_id, _address(contract), task_id, round_, _address(edge), ballot.as_tuple()]
    return keccak(encode(types, [*values, salt]))


def _address(value: str) -> str:
    return to_checksum_address(value)
