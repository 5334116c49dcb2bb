"""Drives EdgeTune rounds on the embedded chain for the contract tests (scripted edges)."""

from dataclasses import dataclass, field, replace

from eth_account import Account
from eth_utils import keccak

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, transfer
from edgetune.chain.types import Ballot, TaskConfig, update_commitment, vote_commitment

ETHER = 10**18


def h(label: str) -> bytes:
    return keccak(text=label)


BASE_CONFIG = TaskConfig(
    base_model_hash=h("base"),
    adapter_spec_hash=h("spec"),
    initial_global_hash=h("global-0"),
    base_model_uri="tiny-llama",
    base_model_cid="bafybase",
    initial_global_cid="bafyglobal0",
    rounds=2,
    max_edges=8,
    registration_blocks=100,
    commit_blocks=10,
    reveal_blocks=10,
    vote_commit_blocks=10,
    vote_reveal_blocks=10,
    max_samples=1000,
    min_stake=ETHER,
    slash_non_reveal=ETHER // 2,
    slash_invalid=ETHER,
)


@dataclass
class Update:
    update_hash: bytes
    cid: str
    samples: int
    salt: bytes


@dataclass
class TaskHarness:
    chain: Chain
    owner: EdgeTuneClient
    updates: dict[tuple[int, int, str], Update] = field(default_factory=dict)

    @property
    def w3(self):
        return self.chain.w3

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def mine(self, blocks: int) -> None:
        self.chain.mine(blocks)

    def edges(self, count: int, first: int = 1) -> list[EdgeTuneClient]:
        """Edge clients on the chain's funded accounts, then on fresh accounts funded here."""
        accounts = self.chain.accounts[first : first + count]
        for index in range(len(accounts), count):
            accounts.append(Account.from_key(keccak(text=f"edge-{index}")))
            transfer(self.chain, self.owner.sender, accounts[-1].address, 100 * ETHER)
        return [self.owner.as_sender(a) for a in accounts]

    def create(self, pool: int = 10 * ETHER, **overrides) -> int:
        task_id, _ = self.owner.create_task(replace(BASE_CONFIG, **overrides), pool)
        return task_id

    def started_task(
        self, edges: list[EdgeTuneClient], stake: int = ETHER, pool: int = 10 * ETHER, **overrides
    ) -> int:
        task_id = self.create(pool, **overrides)
        for edge in edges:
            edge.register(task_id, stake)
        if self.owner.status(task_id).phase.name == "REGISTRATION":
            self.owner.start(task_id)
        return task_id

    def commit(self, task_id: int, round_: int, edge: EdgeTuneClient, samples: int = 100) -> Update:
        address = edge.sender_address
        update = Update(
            h(f"{task_id}/{round_}/{address}"), f"bafy-{address[:10]}", samples, h(address)
        )
        commitment = update_commitment(
            self.chain_id, edge.address, task_id, round_, address,
            update.update_hash, update.cid, update.samples, update.salt,
        )  # fmt: skip
        edge.commit_update(task_id, round_, commitment)
        self.updates[(task_id, round_, address)] = update
        return update

    def reveal(self, task_id: int, round_: int, edge: EdgeTuneClient) -> None:
        u = self.updates[(task_id, round_, edge.sender_address)]
        edge.reveal_update(task_id, round_, u.update_hash, u.cid, u.samples, u.salt)

    def commit_vote(
        self, task_id: int, round_: int, edge: EdgeTuneClient, ballot: Ballot, salt: bytes = b""
    ) -> bytes:
        salt = salt or h(f"vote/{edge.sender_address}")
        address = edge.sender_address
        commitment = vote_commitment(
            self.chain_id, edge.address, task_id, round_, address, ballot, salt
        )
        edge.commit_vote(task_id, round_, commitment)
        return salt

    def vote_all(
        self, task_id: int, round_: int, ballots: dict[str, Ballot], voters: list[EdgeTuneClient]
    ) -> None:
        salts = {
            v.sender_address: self.commit_vote(task_id, round_, v, ballots[v.sender_address])
            for v in voters
        }
        if self.owner.phase(task_id).name == "VOTE_COMMIT":
            self.mine_until_phase(task_id, "VOTE_REVEAL")
        for v in voters:
            v.reveal_vote(task_id, round_, ballots[v.sender_address], salts[v.sender_address])

    def run_updates(self, task_id: int, round_: int, trainers: list[EdgeTuneClient]) -> None:
        for edge in trainers:
            self.commit(task_id, round_, edge)
        if self.owner.phase(task_id).name == "UPDATE_COMMIT":
            self.mine_until_phase(task_id, "UPDATE_REVEAL")
        for edge in trainers:
            self.reveal(task_id, round_, edge)
        if self.owner.phase(task_id).name == "UPDATE_REVEAL":
            self.mine_until_phase(task_id, "VOTE_COMMIT")

    def mine_until_phase(self, task_id: int, phase: str, limit: int = 500) -> None:
        for _ in range(limit):
            if self.owner.phase(task_id).name == phase:
                return
            self.mine(1)
        raise AssertionError(f"task {task_id} never reached {phase}")

    def agreeing_ballot(
        self,
        scores: list[int],
        valid: int | None = None,
        included: int | None = None,
        approve: bool = True,
    ) -> Ballot:
        all_bits = (1 << len(scores)) - 1
        valid = all_bits if valid is None else valid
        return Ballot(
            valid,
            valid if included is None else included,
            h("aggregate"),
            "bafyagg",
            approve,
            tuple(scores),
        )

    def full_round(
        self, task_id: int, round_: int, edges: list[EdgeTuneClient], scores: list[int]
    ) -> None:
        """Every edge trains and votes the same ballot; the round is then finalized."""
        self.run_updates(task_id, round_, edges)
        ballot = self.agreeing_ballot(scores)
        self.vote_all(task_id, round_, {e.sender_address: ballot for e in edges}, edges)
        self.owner.finalize(task_id)

    def assert_funds_conserved(self, task_ids: list[int], accounts: list[str]) -> None:
        """Contract balance == Σ stakes + Σ owed + Σ undistributed pools."""
        stakes = sum(self.owner.stake_of(t, a) for t in task_ids for a in accounts)
        owed = sum(self.owner.owed(a) for a in set(accounts) | {self.owner.sender_address})
        pools = sum(self.owner.task_funds(t).pool for t in task_ids)
        assert self.w3.eth.get_balance(self.owner.address) == stakes + owed + pools


class expect_revert:
    """Asserts the block reverts with exactly the custom error `name` (and the given args)."""

    def __init__(self, name: str, **args: object) -> None:
        self.name, self.args = name, args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, _tb) -> bool:
        from edgetune.chain.client import ContractRevert

        assert isinstance(error, ContractRevert), f"expected {self.name}, got {error!r}"
        assert error.error == self.name, f"expected {self.name}, got {error}"
        for key, value in self.args.items():
            assert error.values[key] == value, f"{key}: {error.values[key]} != {value}"
        return True
