"""Drives EdgeTune v2 rounds on the embedded chain for the contract tests (scripted edges).

A round is: every edge commits and reveals an update; every edge commits and reveals a score
ballot; someone tallies; every edge commits and reveals an attestation; someone finalizes.
The helpers do one stage for a list of edges, then mine until the next stage if it has not
closed early, so tests can stop at any point and misbehave there.
"""

from dataclasses import dataclass, field, replace

from eth_account import Account
from eth_utils import keccak

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, transfer
from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import (
    Attestation,
    Phase,
    ScoreBallot,
    TaskConfig,
    commitment,
    update_payload,
)

ETHER = 10**18
MILLION = 1_000_000


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
    score_commit_blocks=10,
    score_reveal_blocks=10,
    tally_blocks=10,
    attest_commit_blocks=10,
    attest_reveal_blocks=10,
    min_stake=ETHER,
    slash_absent=ETHER // 4,
    slash_non_reveal=ETHER // 2,
    slash_invalid=ETHER,
)
AGGREGATE = Attestation(h("aggregate"), "bafyagg", True)


@dataclass
class Opened:
    """What an edge committed to in one stage, kept to reveal it."""

    payload: bytes
    salt: bytes
    values: object


@dataclass
class TaskHarness:
    chain: Chain
    owner: EdgeTuneClient
    opened: dict[tuple[int, int, Phase, str], Opened] = field(default_factory=dict)

    @property
    def w3(self):
        return self.chain.w3

    def mine(self, blocks: int) -> None:
        self.chain.mine(blocks)

    def edges(self, count: int, first: int = 1) -> list[EdgeTuneClient]:
        """Edge clients on the chain's funded accounts, then on fresh accounts funded here."""
        accounts = self.chain.accounts[first : first + count]
        for index in range(len(accounts), count):
            accounts.append(Account.from_key(keccak(text=f"edge-{first}-{index}")))
            transfer(self.chain, self.owner.sender, accounts[-1].address, 100 * ETHER)
        return [self.owner.as_sender(a) for a in accounts]

    def create(self, pool: int = 10 * ETHER, allowlist=(), **overrides) -> int:
        task_id, _ = self.owner.create_task(replace(BASE_CONFIG, **overrides), pool, allowlist)
        return task_id

    def started_task(
        self, edges: list[EdgeTuneClient], stake: int = ETHER, pool: int = 10 * ETHER, **overrides
    ) -> int:
        task_id = self.create(pool, **overrides)
        for edge in edges:
            edge.register(task_id, stake)
        self.owner.start(task_id)
        return task_id

    # ------------------------------------------------------------------ one stage at a time

    def commit(self, task_id: int, round_: int, stage: Phase, edge: EdgeTuneClient, values) -> bytes:
        """Commits `values` (an update (hash, cid), a ScoreBallot or an Attestation)."""
        payload = _payload(values)
        salt = h(f"salt/{task_id}/{round_}/{stage.name}/{edge.sender_address}")
        digest = self.commitment_of(task_id, round_, stage, edge.sender_address, payload, salt)
        edge.commit(task_id, round_, stage, digest)
        self.opened[(task_id, round_, stage, edge.sender_address)] = Opened(payload, salt, values)
        return digest

    def commitment_of(self, task_id, round_, stage, address, payload, salt) -> bytes:
        return commitment(
            self.chain.chain_id, self.owner.address, task_id, round_, stage, address, payload, salt
        )

    def reveal(self, task_id: int, round_: int, stage: Phase, edge: EdgeTuneClient) -> None:
        opened = self.opened[(task_id, round_, stage, edge.sender_address)]
        if stage == Phase.UPDATE_COMMIT:
            update_hash, cid = opened.values
            edge.reveal_update(task_id, round_, update_hash, cid, opened.salt)
        elif stage == Phase.SCORE_COMMIT:
            edge.reveal_scores(task_id, round_, opened.values, opened.salt)
        else:
            edge.reveal_attestation(task_id, round_, opened.values, opened.salt)

    def stage(self, task_id: int, round_: int, stage: Phase, values: dict) -> None:
        """Every edge in `values` commits, then (after the commit phase) reveals."""
        edges = list(values)
        for edge in edges:
            self.commit(task_id, round_, stage, edge, values[edge])
        self.mine_until_phase(task_id, Phase(stage + 1))
        for edge in edges:
            self.reveal(task_id, round_, stage, edge)
        self.mine_past(task_id, Phase(stage + 1))

    def updates(self, task_id: int, round_: int, edges: list[EdgeTuneClient]) -> None:
        values = {e: update_of(task_id, round_, e) for e in edges}
        self.stage(task_id, round_, Phase.UPDATE_COMMIT, values)

    def scores(self, task_id: int, round_: int, ballots: dict) -> None:
        self.stage(task_id, round_, Phase.SCORE_COMMIT, ballots)

    def tally(self, task_id: int, round_: int):
        ballots = self.owner.score_ballots(task_id, round_)
        return self.owner.tally(task_id, round_, ballots)

    def attest(self, task_id: int, round_: int, attestations: dict) -> None:
        self.stage(task_id, round_, Phase.ATTEST_COMMIT, attestations)

    def full_round(
        self,
        task_id: int,
        round_: int,
        edges: list[EdgeTuneClient],
        scores: list[int],
        ballots: dict | None = None,
        attestations: dict | None = None,
    ):
        """Every edge trains, scores (the same `scores` unless `ballots` says otherwise) and
        approves the same aggregate; then the round is finalized. Returns finalize's receipt."""
        self.updates(task_id, round_, edges)
        agreed = ballot(scores)
        self.scores(task_id, round_, ballots or {e: agreed for e in edges})
        self.tally(task_id, round_)
        if self.owner.phase(task_id) == Phase.ATTEST_COMMIT:
            self.attest(task_id, round_, attestations or {e: AGGREGATE for e in edges})
        return self.owner.finalize(task_id)

    # ------------------------------------------------------------------ clock

    def mine_until_phase(self, task_id: int, phase: Phase, limit: int = 500) -> None:
        for _ in range(limit):
            if self.owner.phase(task_id) >= phase:
                return
            self.mine(1)
        raise AssertionError(f"task {task_id} never reached {phase.name}")

    def mine_past(self, task_id: int, phase: Phase) -> None:
        """Mines until the task has left `phase` (a reveal phase nobody closed early)."""
        self.mine_until_phase(task_id, Phase(phase + 1))

    def assert_funds_conserved(self, task_ids: list[int], accounts: list[str]) -> None:
        """Contract balance == Σ stakes + Σ owed + Σ undistributed pools."""
        stakes = sum(self.owner.stake_of(t, a) for t in task_ids for a in accounts)
        owed = sum(self.owner.owed(a) for a in set(accounts) | {self.owner.sender_address})
        pools = sum(self.owner.task_funds(t).pool for t in task_ids)
        assert self.w3.eth.get_balance(self.owner.address) == stakes + owed + pools


def update_of(task_id: int, round_: int, edge: EdgeTuneClient) -> tuple[bytes, str]:
    address = edge.sender_address
    return h(f"update/{task_id}/{round_}/{address}"), f"bafy-{address[2:12].lower()}"


def ballot(scores: list[int], valid: int | None = None, copies: int = 0) -> ScoreBallot:
    everything = (1 << len(scores)) - 1
    return ScoreBallot(everything if valid is None else valid, copies, tuple(scores))


def _payload(values) -> bytes:
    if isinstance(values, tuple):
        return update_payload(*values)
    return values.payload()


class expect_revert:
    """Asserts the block reverts with exactly the custom error `name` (and the given args)."""

    def __init__(self, name: str, **args: object) -> None:
        self.name, self.args = name, args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, _tb) -> bool:
        assert isinstance(error, ContractRevert), f"expected {self.name}, got {error!r}"
        assert type(error).__name__ == self.name, f"expected {self.name}, got {error}"
        for key, value in self.args.items():
            assert error.values[key] == value, f"{key}: {error.values[key]} != {value}"
        return True
