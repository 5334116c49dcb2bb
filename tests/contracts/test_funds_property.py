"""Property: whatever anyone does, in any order, the contract's funds are conserved after every
step: balance == Σ stakes + Σ owed + Σ undistributed pools.

A hypothesis state machine drives every external function of EdgeTune (createTask with and
without an allowlist, register, start, cancel, requestExit, releaseStake, refundPool, withdraw,
commit in all three stages, revealUpdate, revealScores, tally, revealAttestation, finalize) and
mines blocks. Each step draws one move among those that can act now (read from a cache of the
chain, refreshed after every executed move), and the edge that still has to act, so random
runs reach rewarded rounds; payloads vary (byte copies, invalid marks, rejecting and rival
attestations) and reverts are allowed: they change nothing. The moves are drawn by one rule
rather than one rule each because hypothesis switches random subsets of rules off per example
("swarm testing"), which with a handful of examples left some moves never drawn. The test counts
the moves that really executed and fails unless every move ran at least once and some round
paid rewards (v1's version only ever ran one of its eleven moves).
"""

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import Attestation, Phase, ScoreBallot, Status, Step

from .rounds import AGGREGATE, ETHER, h, revert_to_snapshot, take_snapshot

EDGES = 4  # the last one is a stranger to allowlisted tasks
MAX_TASKS = 3
MAX_EDGES = 3  # per task: the fourth edge finds it full
COMMIT_STEP = {
    Phase.UPDATE_COMMIT: Step.UPDATE_COMMITTED,
    Phase.SCORE_COMMIT: Step.SCORES_COMMITTED,
    Phase.ATTEST_COMMIT: Step.ATTEST_COMMITTED,
}
REVEAL_OF = {
    Phase.UPDATE_REVEAL: Phase.UPDATE_COMMIT,
    Phase.SCORE_REVEAL: Phase.SCORE_COMMIT,
    Phase.ATTEST_REVEAL: Phase.ATTEST_COMMIT,
}
REVEAL_MOVE = {
    Phase.UPDATE_REVEAL: "revealUpdate",
    Phase.SCORE_REVEAL: "revealScores",
    Phase.ATTEST_REVEAL: "revealAttestation",
}
OVER = (Phase.FINISHED, Phase.CANCELLED)
MOVES = {
    "createTask", "createTask+allowlist", "register", "start", "cancel", "requestExit",
    "releaseStake", "refundPool", "withdraw", "commit:UPDATE_COMMIT", "commit:SCORE_COMMIT",
    "commit:ATTEST_COMMIT", "revealUpdate", "revealScores", "tally", "revealAttestation",
    "finalize", "mine",
}  # fmt: skip
# How often a move is drawn when it can act, relative to the others: the round's own moves
# most, disruptive ones (cancel, exit) rarely, so that rounds get played to the end.
WEIGHT = {"cancel": 1, "requestExit": 1, "mine": 2, "withdraw": 2, "releaseStake": 2}
ROUND_WEIGHT = 6


@dataclass
class View:
    """One step's reads: per task its phase, round and pool; per (task, edge index) the edge's
    status; per account what it is owed."""

    phases: dict[int, Phase] = field(default_factory=dict)
    rounds: dict[int, int] = field(default_factory=dict)
    pools: dict[int, int] = field(default_factory=dict)
    status: dict[tuple[int, int], Status] = field(default_factory=dict)
    owed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Draw:
    """The random part of one step."""

    move: int
    who: int
    variant: int
    amount: int
    scores: tuple[int, ...]


draws = st.builds(
    Draw,
    move=st.integers(0, 2**16),
    who=st.integers(0, 63),
    variant=st.integers(0, 7),
    amount=st.integers(0, 2**16),
    scores=st.lists(st.integers(-(6 * 10**5), 5 * 10**5), min_size=3, max_size=3).map(tuple),
)


def test_funds_are_conserved_whatever_anyone_does(harness, owner):
    edges = harness.edges(EDGES)
    accounts = [owner.sender_address, *(e.sender_address for e in edges)]
    executed: Counter[str] = Counter()
    rewarded_rounds: list[int] = []

    class Protocol(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = take_snapshot(harness.chain)
            harness.opened.clear()  # task ids repeat from one example to the next
            harness.revealed_ballots.clear()
            self.tasks: list[int] = []
            self.ended: set[int] = set()
            self.view = View()
            self.new_task(allowlisted=False, rounds=2, pool=2 * ETHER + 1)

        def teardown(self) -> None:
            for task_id in self.tasks:
                self.read(task_id)
            self.funds_conserved()
            revert_to_snapshot(harness.chain, self.snapshot)

        # ------------------------------------------------------------ the one rule

        @rule(draw=draws)
        def act(self, draw: Draw) -> None:
            """Draws one move among those that can act now, weighted, and plays it."""
            weighted = [m for m in self.moves() for _ in range(WEIGHT.get(m, ROUND_WEIGHT))]
            move = weighted[draw.move % len(weighted)]
            getattr(self, "do_" + move.split(":")[0].split("+")[0])(draw)

        def moves(self) -> list[str]:
            """The moves that can act now, the round's own first (the all-zero draw, which
            hypothesis tries first, then plays honest rounds) and mining last."""
            phase, moves = self.phase(), []
            registered = self.edges_where(lambda s: s.registered)
            if phase == Phase.REGISTRATION:
                moves += ["register"] if len(registered) < MAX_EDGES else []
                moves += ["start"] if registered else []
            if phase in COMMIT_STEP and self.edges_where(
                lambda s: s.active and not s.has(COMMIT_STEP[phase])
            ):
                moves.append(f"commit:{phase.name}")
            if phase in REVEAL_OF and self.revealers():
                moves.append(REVEAL_MOVE[phase])
            if phase == Phase.TALLY:
                moves.append("tally")
            if phase == Phase.FINALIZABLE:
                moves.append("finalize")
            if phase in OVER and len(self.tasks) < MAX_TASKS:
                moves += ["createTask", "createTask+allowlist"]
            if self.releasable():
                moves.append("releaseStake")
            if self.refundable():
                moves.append("refundPool")
            if any(self.view.owed.values()):
                moves.append("withdraw")
            if phase == Phase.REGISTRATION:
                moves.append("cancel")
            if phase not in OVER and self.edges_where(lambda s: s.active):
                moves.append("requestExit")
            return [*moves, "mine"]

        # ------------------------------------------------------------ cache and helpers

        def new_task(self, allowlisted: bool, rounds: int, pool: int) -> int:
            allowlist = [e.sender_address for e in edges[:-1]] if allowlisted else []
            task_id = harness.create(
                pool, allowlist, rounds=rounds, max_edges=MAX_EDGES, registration_blocks=8,
                commit_blocks=8, reveal_blocks=8, score_commit_blocks=8, score_reveal_blocks=8,
                tally_blocks=6, attest_commit_blocks=8, attest_reveal_blocks=8,
                min_stake=ETHER // 2, slash_absent=ETHER // 8, slash_non_reveal=ETHER // 4,
                slash_invalid=ETHER // 2,
            )  # fmt: skip
            self.tasks.append(task_id)
            self.refresh()
            return task_id

        def refresh(self, task_id: int | None = None) -> None:
            """Re-reads one task (by default the live one) after a move on it: its edges'
            statuses (which carry what each edge is owed), its pool, and what the owner is owed.
            Only a move on a task changes it, so the other tasks' cached reads stay exact; in
            case that assumption ever broke, every task is re-read when one ends and at the end
            of each run, and the invariant checks those fresh reads too."""
            task_id = task_id or self.live
            self.read(task_id)
            if self.view.phases[task_id] in OVER and task_id not in self.ended:
                self.ended.add(task_id)
                for other in self.tasks:
                    self.read(other)

        def read(self, task_id: int) -> None:
            v = self.view
            for i, edge in enumerate(edges):
                status = owner.status(task_id, edge.sender_address)
                v.status[(task_id, i)] = status
                v.owed[edge.sender_address] = status.owed
            v.phases[task_id], v.rounds[task_id] = status.phase, status.round
            v.pools[task_id] = owner.task_funds(task_id).pool
            v.owed[owner.sender_address] = owner.owed(owner.sender_address)

        def attempt(self, move: str, action, task_id: int | None = None) -> None:
            """Runs `action` and counts it if it executed; a revert is fine and changes nothing."""
            try:
                action()
            except ContractRevert:
                return
            executed[move] += 1
            self.refresh(task_id)

        @property
        def live(self) -> int:
            return self.tasks[-1]

        def phase(self) -> Phase:
            return self.view.phases[self.live]

        def round(self) -> int:
            return self.view.rounds[self.live]

        def edges_where(self, predicate) -> list[int]:
            return [i for i in range(EDGES) if predicate(self.view.status[(self.live, i)])]

        def revealers(self) -> list[int]:
            step = COMMIT_STEP[REVEAL_OF[self.phase()]]
            return self.edges_where(lambda s: s.has(step) and not s.has(Step(step << 1)))

        def releasable(self) -> list[tuple[int, int]]:
            return [
                key for key, s in self.view.status.items()
                if s.stake and (not s.active or self.view.phases[key[0]] in OVER)
            ]  # fmt: skip

        def refundable(self) -> list[int]:
            return [t for t in self.tasks if self.view.phases[t] in OVER and self.view.pools[t]]

        @staticmethod
        def one_of(candidates: list, index: int):
            return candidates[index % len(candidates)]

        # ------------------------------------------------------------ moves

        def do_mine(self, draw: Draw) -> None:
            harness.mine(1 + draw.amount % 4)
            executed["mine"] += 1
            if self.phase() not in OVER:  # an ended task's reads cannot change by mining
                self.refresh()

        def do_createTask(self, draw: Draw) -> None:
            allowlisted = draw.variant % 2 == 1
            move = "createTask+allowlist" if allowlisted else "createTask"
            rounds, pool = 1 + draw.who % 2, 2 + draw.amount * 10**13
            self.attempt(move, lambda: self.new_task(allowlisted, rounds, pool))

        def do_register(self, draw: Draw) -> None:
            # Mostly an edge not yet in; variant 7: anyone (a duplicate, or the stranger).
            fresh = self.edges_where(lambda s: not s.registered)
            e = self.one_of(fresh if draw.variant != 7 else list(range(EDGES)), draw.who)
            stake = ETHER // 2 + draw.amount * 3 * 10**13  # the minimum to ~2.5 ETH
            self.attempt("register", lambda: edges[e].register(self.live, stake))

        def do_start(self, draw: Draw) -> None:
            self.attempt("start", lambda: owner.start(self.live))

        def do_cancel(self, draw: Draw) -> None:
            self.attempt("cancel", lambda: owner.cancel(self.live))

        def do_requestExit(self, draw: Draw) -> None:
            e = self.one_of(self.edges_where(lambda s: s.active), draw.who)
            self.attempt("requestExit", lambda: edges[e].request_exit(self.live))

        def do_releaseStake(self, draw: Draw) -> None:
            task_id, e = self.one_of(self.releasable(), draw.who)
            self.attempt("releaseStake", lambda: edges[e].release_stake(task_id), task_id)

        def do_refundPool(self, draw: Draw) -> None:
            task_id = self.one_of(self.refundable(), draw.who)
            self.attempt("refundPool", lambda: owner.refund_pool(task_id), task_id)

        def do_withdraw(self, draw: Draw) -> None:
            who = self.one_of([a for a in accounts if self.view.owed.get(a)], draw.who)
            client = owner if who == owner.sender_address else edges[accounts.index(who) - 1]
            self.attempt("withdraw", client.withdraw)

        def do_commit(self, draw: Draw) -> None:
            stage, round_ = self.phase(), self.round()
            step = COMMIT_STEP[stage]
            pending = self.edges_where(lambda s: s.active and not s.has(step)) or [0]
            e = self.one_of(pending, draw.who)
            reveals = self.view.status[(self.live, e)].reveals
            if stage == Phase.UPDATE_COMMIT:  # variant 7: a byte copy of edge 0's update
                author = 0 if draw.variant == 7 else e
                values = (h(f"u/{self.live}/{round_}/{author}"), f"bafy{author}")
            elif stage == Phase.SCORE_COMMIT:  # variant 7: marks update 0 invalid
                full = (1 << reveals) - 1
                valid = full & ~1 if draw.variant == 7 else full
                scores = tuple(500_000 + s for s in (draw.scores * 2)[:reveals])
                values = ScoreBallot(valid, 0, scores)
            else:  # variant 6: rejects; 7: a rival with the honest hash and another CID
                values = {
                    6: Attestation(AGGREGATE.aggregate_hash, AGGREGATE.aggregate_cid, False),
                    7: Attestation(AGGREGATE.aggregate_hash, "bafy-rival", True),
                }.get(draw.variant, AGGREGATE)
            commit = lambda: harness.commit(self.live, round_, stage, edges[e], values)  # noqa: E731
            self.attempt(f"commit:{stage.name}", commit)

        def do_reveal(self, draw: Draw) -> None:
            phase, round_ = self.phase(), self.round()
            e = self.one_of(self.revealers(), draw.who)
            reveal = lambda: harness.reveal(self.live, round_, REVEAL_OF[phase], edges[e])  # noqa: E731
            self.attempt(REVEAL_MOVE[phase], reveal)

        do_revealUpdate = do_revealScores = do_revealAttestation = do_reveal

        def do_tally(self, draw: Draw) -> None:
            round_ = self.round()
            self.attempt("tally", lambda: harness.tally(self.live, round_))

        def do_finalize(self, draw: Draw) -> None:
            def run() -> None:
                receipt = owner.finalize(self.live)
                if owner.receipt_events(receipt, "RewardCredited"):
                    rewarded_rounds.append(self.live)

            self.attempt("finalize", run)

        # ------------------------------------------------------------ the property

        @invariant()
        def funds_conserved(self) -> None:
            """Read fresh after every executed move (a reverted one changes nothing)."""
            v = self.view
            stakes = sum(s.stake for s in v.status.values())
            total = stakes + sum(v.owed.values()) + sum(v.pools.values())
            assert harness.w3.eth.get_balance(owner.address) == total

    Protocol.TestCase.settings = settings(
        max_examples=3,
        stateful_step_count=45,
        deadline=None,
        derandomize=True,  # the same runs every time, so the coverage assertions are stable
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    Protocol.TestCase().runTest()
    missing = MOVES - set(executed)
    assert not missing, f"moves that never executed: {sorted(missing)}; ran {dict(executed)}"
    assert rewarded_rounds, f"no run reached a rewarded round; ran {dict(executed)}"
    print("executed:", dict(sorted(executed.items())), "rewarded rounds:", len(rewarded_rounds))
