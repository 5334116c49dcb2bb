"""Drives EdgeTune v2 rounds on a local anvil (or the embedded chain) for the contract tests
(scripted edges).

A round is: every edge commits and reveals an update; every edge commits and reveals a score
ballot; someone tallies; every edge commits and reveals an attestation; someone finalizes.
The helpers do one stage for a list of edges, then mine until the next stage if it has not
closed early, so tests can stop at any point and misbehave there.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, fields, replace

from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_utils import keccak

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.compiler import load_artifact
from edgetune.chain.connect import Chain, send, transfer
from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import (
    AGREEMENT_SCALE,
    BPS,
    Attestation,
    Phase,
    RewardKind,
    ScoreBallot,
    SlashReason,
    TaskConfig,
    commitment,
    tally_parts,
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
    # Score ballots as revealed through `reveal`, read from the receipts: `tally` hands them
    # back without a get_logs scan of the whole chain (slow on the embedded chain).
    revealed_ballots: dict[tuple[int, int], list[ScoreBallot]] = field(default_factory=dict)

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

    def commit(
        self, task_id: int, round_: int, stage: Phase, edge: EdgeTuneClient, values
    ) -> bytes:
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
            receipt = edge.reveal_scores(task_id, round_, opened.values, opened.salt)
            (e,) = edge.receipt_events(receipt, "ScoresRevealed")
            revealed = ScoreBallot.unpack(e.edge, e.validMask, e.copyMask, bytes(e.scores))
            self.revealed_ballots.setdefault((task_id, round_), []).append(revealed)
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
        """Tallies the ballots revealed through `reveal` (or, if none were, those in the logs)."""
        ballots = self.revealed_ballots.get((task_id, round_))
        if ballots is None:
            ballots = self.owner.score_ballots(task_id, round_)
        parts = tally_parts(len(ballots[0].scores) if ballots else 0)
        receipts = [self.owner.tally(task_id, round_, ballots, part) for part in range(parts)]
        return receipts[-1]

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

    # ------------------------------------------------------------------ what-ifs

    @contextmanager
    def what_if(self) -> Iterator[None]:
        """Runs the block on a snapshot of the chain and rolls it back afterwards, so a test can
        play one round two ways from the same state and compare the outcomes."""
        snapshot = take_snapshot(self.chain)
        opened, ballots = dict(self.opened), {k: list(v) for k, v in self.revealed_ballots.items()}
        try:
            yield
        finally:
            revert_to_snapshot(self.chain, snapshot)
            self.opened, self.revealed_ballots = opened, ballots

    def worth(self, task_id: int, account: str) -> int:
        """What `account` holds in the contract for this task: its stake plus all it is owed."""
        return self.owner.stake_of(task_id, account) + self.owner.owed(account)

    def create_raw(self, pool: int, allowlist: Sequence[str] = (), **fields_: object):
        """createTask with Solidity field names, bypassing TaskConfig's own checks, so the
        contract's validation is what a test sees."""
        return self.owner._send(
            self.owner.contract.functions.createTask(raw_config(**fields_), list(allowlist)), pool
        )


# ---------------------------------------------------------------------- reading receipts


def deploy_helper(chain: Chain, name: str, *args):
    """Deploys a contract of contracts/ (a test double) and returns a web3 contract for it."""
    artifact = load_artifact(name)
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send(chain, factory.constructor(*args), chain.accounts[0])
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def credits(client: EdgeTuneClient, receipt) -> dict[tuple[str, RewardKind], int]:
    """{(edge, kind): amount} of every RewardCredited in the receipt."""
    events = client.receipt_events(receipt, "RewardCredited")
    return {(e.edge, RewardKind(e.kind)): e.amount for e in events}


def slashes(client: EdgeTuneClient, receipt) -> dict[str, list[tuple[SlashReason, int]]]:
    """{edge: [(reason, amount), ...]} of every Slashed in the receipt, in emission order."""
    out: dict[str, list[tuple[SlashReason, int]]] = {}
    for e in client.receipt_events(receipt, "Slashed"):
        out.setdefault(e.edge, []).append((SlashReason(e.reason), e.amount))
    return out


def finalized(client: EdgeTuneClient, receipt):
    (event,) = client.receipt_events(receipt, "RoundFinalized")
    return event


def tallied(client: EdgeTuneClient, receipt):
    (event,) = client.receipt_events(receipt, "RoundTallied")
    return event


def raw_config(**fields_: object) -> tuple:
    """BASE_CONFIG as the ABI tuple, with fields given by their Solidity (camelCase) names."""
    names = [_camel(f.name) for f in fields(TaskConfig)]
    values = list(astuple(BASE_CONFIG))
    for name, value in fields_.items():
        values[names.index(name)] = value
    return tuple(values)


def bytes32(text: str) -> bytes:
    """A short string as Solidity's bytes32 literal (the `field` of EdgeTuneInvalidConfig)."""
    return text.encode().ljust(32, b"\0")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# ---------------------------------------------------------------------- reference rules
# An independent re-statement of the contract's stage-1 and payout rules (docs/protocol.md),
# so tests compare the chain with arithmetic done here, to the wei.


def lower_weighted_median(pairs: Sequence[tuple[int, int]]) -> int:
    """The smallest score whose cumulative weight reaches half the total; 0 without weight."""
    total = sum(weight for _, weight in pairs)
    if total == 0:
        return 0
    cumulative = 0
    for score, weight in sorted(pairs):
        cumulative += weight
        if 2 * cumulative >= total:
            return score
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ExpectedTally:
    valid: int
    copies: int
    included: int
    medians: tuple[int, ...]
    agreements: tuple[int, ...]  # per ballot, in ballot order


def expected_tally(
    stakes: Sequence[int],
    ballots: Sequence[ScoreBallot],
    reveals: int,
    tau: int = BASE_CONFIG.harm_tolerance,
    turnout: bool = True,
) -> ExpectedTally:
    """Stage 1 from the ballots (in reveal order) and their scorers' stakes."""
    total = sum(stakes)
    valid = copies = included = 0
    medians = []
    for j in range(reveals):
        bit = 1 << j
        if 2 * sum(s for s, b in zip(stakes, ballots, strict=True) if b.valid_mask & bit) > total:
            valid |= bit
        if 2 * sum(s for s, b in zip(stakes, ballots, strict=True) if b.copy_mask & bit) > total:
            copies |= bit
        medians.append(
            lower_weighted_median([(b.scores[j], s) for s, b in zip(stakes, ballots, strict=True)])
        )
        if valid & bit and not copies & bit and medians[j] >= -tau:
            included |= bit
    counted = [j for j in range(reveals) if valid & ~copies & (1 << j)]
    centre = sorted(medians[j] for j in counted)[(len(counted) - 1) // 2] if counted else 0
    spread = sum(abs(medians[j] - centre) for j in counted)
    agreements = []
    for b in ballots:
        distance = sum(abs(b.scores[j] - medians[j]) for j in counted)
        ok = spread and distance < spread
        agreements.append((spread - distance) * AGREEMENT_SCALE // spread if ok else 0)
    return ExpectedTally(
        valid, copies, included if turnout else 0, tuple(medians), tuple(agreements)
    )


def expected_credits(
    budget: int,
    authors: Sequence[str],
    outcome: ExpectedTally,
    approvers: dict[str, int],
    validator_share_bps: int = BASE_CONFIG.validator_share_bps,
) -> dict[tuple[str, RewardKind], int]:
    """Credits of an accepted round: `authors[j]` revealed update j; `approvers` maps each edge
    that revealed an approval of the winner to its agreement."""
    trainer_pool = budget * (BPS - validator_share_bps) // BPS
    validator_pool = budget - trainer_pool
    positive = {
        authors[j]: max(m, 0) for j, m in enumerate(outcome.medians) if outcome.included & (1 << j)
    }
    median_total = sum(positive.values())
    agreement_total = sum(approvers.values())
    out: dict[tuple[str, RewardKind], int] = {}
    for author, m in positive.items():
        if m and trainer_pool * m // median_total:
            out[(author, RewardKind.TRAINER)] = trainer_pool * m // median_total
    for edge, agreement in approvers.items():
        if agreement and validator_pool * agreement // agreement_total:
            out[(edge, RewardKind.VALIDATOR)] = validator_pool * agreement // agreement_total
    return out


# ---------------------------------------------------------------------- embedded chain speed


def one_run_gas_estimates(chain: Chain) -> None:
    """Makes the embedded chain estimate gas with one run of the transaction instead of py-evm's
    ~15-run binary search (4x faster tests). The estimate is that run's gas plus 5% and 10,000
    (margin for the 1/64 withheld by each nested call); `gasUsed` of the mined transaction, which
    is what tests and the gas bench read, does not depend on it. A revert raises as before."""
    chain.w3.provider.ethereum_tester.backend.chain.gas_estimator = _one_run_estimate


def _one_run_estimate(state, transaction) -> int:
    top = SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(top)
        if computation.is_error:
            raise computation.error
        used = state.gas_limit - computation.get_gas_remaining()
    finally:
        state.revert(snapshot)
    return min(state.gas_limit, used * 21 // 20 + 10_000)


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


def take_snapshot(chain: Chain) -> object:
    """A snapshot of `chain`'s state to roll back to: the embedded chain's own, or anvil's."""
    if chain.url == "embedded":
        return chain.w3.provider.ethereum_tester.take_snapshot()
    return chain.w3.provider.make_request("evm_snapshot", [])["result"]


def revert_to_snapshot(chain: Chain, snapshot: object) -> None:
    """Back to `snapshot` (on anvil it is used up), with the clients' nonces forgotten."""
    if chain.url == "embedded":
        chain.w3.provider.ethereum_tester.revert_to_snapshot(snapshot)
    else:
        chain.w3.provider.make_request("evm_revert", [snapshot])
    chain.forget_nonces()
