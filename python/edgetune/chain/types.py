"""Python mirrors of the contract's structs and enums, and the commitments it checks.

Money is always an int in wei; hashes are 32-byte `bytes`. The commitment functions reproduce
`EdgeTune.commitmentOf` bit for bit, so an agent can commit without a call.
"""

import struct
from dataclasses import astuple, dataclass
from enum import IntEnum, IntFlag

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from edgetune.errors import EdgetuneError

BPS = 10_000
SCORE_SCALE = 1_000_000  # scores travel as int32 millionths
AGREEMENT_SCALE = 1_000_000  # a validator's agreement with the medians, in millionths


class Phase(IntEnum):
    NONE = 0
    REGISTRATION = 1
    UPDATE_COMMIT = 2
    UPDATE_REVEAL = 3
    SCORE_COMMIT = 4
    SCORE_REVEAL = 5
    TALLY = 6
    ATTEST_COMMIT = 7
    ATTEST_REVEAL = 8
    FINALIZABLE = 9
    FINISHED = 10
    CANCELLED = 11


class Step(IntFlag):
    """Bits of `Status.done`: what an edge has done in the current round (EdgeTune.STEP_*)."""

    UPDATE_COMMITTED = 1
    UPDATE_REVEALED = 2
    SCORES_COMMITTED = 4
    SCORES_REVEALED = 8
    ATTEST_COMMITTED = 16
    ATTEST_REVEALED = 32


class SlashReason(IntEnum):
    ABSENT = 0
    NOT_REVEALED = 1
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
    # A simple majority: stage 1 is deterministic, so honest validators back one candidate.
    quorum_bps: int = 5001
    min_turnout_bps: int = 5000
    validator_share_bps: int = 2000
    registration_blocks: int = 50
    commit_blocks: int = 40
    reveal_blocks: int = 20
    score_commit_blocks: int = 40
    score_reveal_blocks: int = 20
    tally_blocks: int = 20
    attest_commit_blocks: int = 40
    attest_reveal_blocks: int = 20
    harm_tolerance: int = 50_000  # 0.05 in score millionths
    min_stake: int = 10**17
    slash_absent: int = 5 * 10**16
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
        for name in ("slash_absent", "slash_non_reveal", "slash_invalid"):
            if getattr(self, name) > self.min_stake:
                raise InvalidTaskConfig(f"{name} must not exceed min_stake")
        if self.tally_blocks < tally_parts(self.max_edges):
            raise InvalidTaskConfig(
                f"tally_blocks must be at least {tally_parts(self.max_edges)} (one block per "
                f"tally part of {self.max_edges} edges), got {self.tally_blocks}"
            )
        if len(self.initial_global_cid.encode()) > MAX_CID_BYTES:
            raise InvalidTaskConfig(f"initial_global_cid is longer than {MAX_CID_BYTES} bytes")

    def as_tuple(self) -> tuple:
        """The ABI tuple `createTask` takes (field order matches the Solidity struct)."""
        return astuple(self)

    @classmethod
    def from_tuple(cls, values: tuple) -> "TaskConfig":
        return cls(*values)


MAX_CID_BYTES = 128  # the contract's MAX_CID_BYTES: longest CID a reveal or a task may carry

# Updates per `tally` call (ScoreTally.COLUMNS): a round of n updates is tallied in
# tally_parts(n) calls, part k covering updates 32k .. 32k + 31.
TALLY_COLUMNS = 32


def tally_parts(reveals: int) -> int:
    """How many `tally` calls a round with `reveals` revealed updates takes."""
    return max(1, -(-reveals // TALLY_COLUMNS))


@dataclass(frozen=True)
class ScoreBallot:
    """A stage-1 ballot: which revealed updates are valid, which are near-copies of an earlier
    one, and a Shapley score per update in millionths (reveal order)."""

    valid_mask: int
    copy_mask: int
    scores: tuple[int, ...]
    scorer: str = ""  # filled when read back from the chain

    def packed_scores(self) -> bytes:
        """The scores as the contract takes them: 4 big-endian bytes (int32) each."""
        return b"".join(struct.pack(">i", s) for s in self.scores)

    def payload(self) -> bytes:
        return keccak(
            encode(
                ["uint256", "uint256", "bytes"],
                [self.valid_mask, self.copy_mask, self.packed_scores()],
            )
        )

    def as_tuple(self, part: int = 0) -> tuple:
        """The ABI tuple of `ScoreBallot` for `tally` of `part`: the part's scores only."""
        scores = self.packed_scores()[4 * TALLY_COLUMNS * part : 4 * TALLY_COLUMNS * (part + 1)]
        return (_address(self.scorer), self.valid_mask, self.copy_mask, scores)

    @classmethod
    def unpack(cls, scorer: str, valid_mask: int, copy_mask: int, scores: bytes) -> "ScoreBallot":
        values = tuple(s for (s,) in struct.iter_unpack(">i", scores))
        return cls(valid_mask, copy_mask, values, scorer)


@dataclass(frozen=True)
class Attestation:
    """A stage-2 vote on the aggregate: its hash and CID (both part of the candidate key)."""

    aggregate_hash: bytes
    aggregate_cid: str
    approve: bool

    def payload(self) -> bytes:
        return keccak(
            encode(
                ["bytes32", "string", "bool"],
                [self.aggregate_hash, self.aggregate_cid, self.approve],
            )
        )

    def candidate(self) -> bytes:
        """The key the contract groups approving stake by."""
        return keccak(encode(["bytes32", "string"], [self.aggregate_hash, self.aggregate_cid]))


def update_payload(update_hash: bytes, cid: str) -> bytes:
    """What an update commitment binds: keccak256(abi.encode(updateHash, cid))."""
    return keccak(encode(["bytes32", "string"], [update_hash, cid]))


@dataclass(frozen=True)
class Status:
    """One poll of the chain: the task's phase and counts, and one edge's own record."""

    phase: Phase
    round: int
    phase_end: int
    active_edges: int
    reveals: int
    score_reveals: int
    included_mask: int
    global_hash: bytes
    global_cid: str
    registered: bool
    active: bool
    stake: int
    done: Step
    owed: int
    tallied_parts: int  # `tally` calls made this round
    settled_edges: int  # edges settled by `finalize` calls before the last

    @classmethod
    def from_tuple(cls, values: tuple) -> "Status":
        fields = list(values)
        fields[0], fields[12] = Phase(fields[0]), Step(fields[12])
        return cls(*fields)

    def has(self, step: Step) -> bool:
        return bool(self.done & step)


@dataclass(frozen=True)
class RevealedUpdate:
    edge: str
    index: int
    update_hash: bytes
    cid: str


@dataclass(frozen=True)
class TaskFunds:
    owner: str
    pool: int
    carry: int
    reward_per_round: int
    active_stake: int


def commitment(
    chain_id: int,
    contract: str,
    task_id: int,
    round_: int,
    stage: Phase,
    edge: str,
    payload: bytes,
    salt: bytes,
) -> bytes:
    """EdgeTune.commitmentOf: keccak256(abi.encode(chainid, contract, taskId, round, stage,
    edge, payload, salt))."""
    types = ["uint256", "address", "uint256", "uint16", "uint8", "address", "bytes32", "bytes32"]
    values = [chain_id, _address(contract), task_id, round_, int(stage), _address(edge)]
    return keccak(encode(types, [*values, payload, salt]))


def _address(value: str) -> str:
    return to_checksum_address(value)
