"""A task's reward history, rebuilt from the contract's events and state alone (no local files),
so anyone can audit who earned what: `edgetune rewards` renders it, tests recompute it.

Edges come from `edgesOf` (their index is that registration order, so every table and figure
names an edge the same way), the task's settings and funds from state, and everything that
happened from the task's events read from its creation block on: `from_block` is only where to
start looking for that creation, so any value gives the same, complete history.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.errors import HistoryUnavailable, TaskNotFound
from edgetune.chain.types import AGREEMENT_SCALE, SCORE_SCALE, Phase


class EdgeState(StrEnum):
    ACTIVE = "active"  # in a task still running
    EXITED = "exited"  # asked to leave, and was let go at the end of a round
    SLASHED_OUT = "slashed out"  # slashed below the task's minimum stake
    FINISHED = "finished"  # took part until the task finished
    CANCELLED = "cancelled"  # the task was cancelled


@dataclass(frozen=True)
class RoundRecord:
    round: int
    accepted: bool
    global_hash: str
    global_cid: str
    budget: int
    paid: int
    approving_stake: int
    attest_stake: int
    updates: int
    attestations: int
    included: int  # updates the stage-1 tally included


@dataclass
class EdgeRecord:
    """One edge of the task. Money is wei. `released_stake` is stake handed back to the balance
    (not earnings); `withdrawn` and `owed` are the account's, across all its tasks."""

    index: int  # registration order (edgesOf)
    address: str
    registered_stake: int = 0
    stake: int = 0  # still locked in the task
    state: EdgeState = EdgeState.ACTIVE
    rounds_joined: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)  # round -> median Shapley score
    agreement: dict[int, float] = field(default_factory=dict)  # round -> 0..1 with the medians
    trainer_reward: dict[int, int] = field(default_factory=dict)  # round -> wei
    validator_reward: dict[int, int] = field(default_factory=dict)
    slashed: int = 0
    released_stake: int = 0
    withdrawn: int = 0  # Withdrawn events of the account since the task was created
    owed: int = 0  # what the account's withdraw() would pay now

    @property
    def earned(self) -> int:
        return sum(self.trainer_reward.values()) + sum(self.validator_reward.values())

    def earned_in(self, round_: int) -> int:
        return self.trainer_reward.get(round_, 0) + self.validator_reward.get(round_, 0)


@dataclass
class TaskHistory:
    task_id: int
    funded: int  # the pool the owner put in at creation
    remaining: int  # what is left undistributed now (taskFunds), refundable once the task is over
    rounds_planned: int
    phase: str
    current_round: int
    created_block: int
    rounds: list[RoundRecord]
    edges: list[EdgeRecord]  # by index


def load_history(client: EdgeTuneClient, task_id: int, from_block: int = 0) -> TaskHistory:
    """Reads the task's state and every event of it since its creation."""
    count = client.task_count()
    if not 1 <= task_id <= count:
        held = f"tasks 1..{count}" if count else "no tasks"
        raise TaskNotFound(f"no task {task_id} on EdgeTune {client.address} (it holds {held})")
    created = _creation(client, task_id, from_block)
    events = _task_events(client, task_id, created.blockNumber)
    config, status = client.task_config(task_id), client.status(task_id)
    edges = {address: EdgeRecord(i, address) for i, address in enumerate(client.edges_of(task_id))}
    for e in events["EdgeRegistered"]:
        if e.edge in edges:
            edges[e.edge].registered_stake = e.stake
    updates, attestations, included = defaultdict(int), defaultdict(int), defaultdict(int)
    authors: dict[tuple[int, int], str] = {}
    for e in events["UpdateRevealed"]:
        edges[e.edge].rounds_joined.append(e.round)
        authors[(e.round, e.index)] = e.edge
        updates[e.round] += 1
    scorers = defaultdict(list)
    for e in events["ScoresRevealed"]:
        scorers[e.round].append(e.edge)
    for e in events["RoundTallied"]:
        included[e.round] = e.includedMask.bit_count()
        for index, median in enumerate(e.medians):
            if e.includedMask >> index & 1:
                edges[authors[(e.round, index)]].scores[e.round] = median / SCORE_SCALE
        for scorer, agreement in zip(scorers[e.round], e.agreements, strict=True):
            edges[scorer].agreement[e.round] = agreement / AGREEMENT_SCALE
    for e in events["AttestationRevealed"]:
        attestations[e.round] += 1
    for e in events["RewardCredited"]:
        book = edges[e.edge].trainer_reward if e.kind == 0 else edges[e.edge].validator_reward
        book[e.round] = book.get(e.round, 0) + e.amount
    for e in events["Slashed"]:
        edges[e.edge].slashed += e.amount
    for e in events["StakeReleased"]:
        edges[e.edge].released_stake += e.amount
    exiting = {e.edge for e in events["ExitRequested"]}
    withdrawn = _withdrawals(client, created.blockNumber)
    for record in edges.values():
        edge_status = client.status(task_id, record.address)
        record.stake, record.owed = edge_status.stake, edge_status.owed
        record.withdrawn = withdrawn.get(record.address, 0)
        record.state = _edge_state(
            record, status.phase, record.address in exiting, config.min_stake
        )
    rounds = [
        _round_record(e, updates[e.round], attestations[e.round], included[e.round])
        for e in events["RoundFinalized"]
    ]
    return TaskHistory(
        task_id=task_id,
        funded=created.args.pool,
        remaining=client.task_funds(task_id).pool,
        rounds_planned=config.rounds,
        phase=status.phase.name,
        current_round=status.round,
        created_block=created.blockNumber,
        rounds=rounds,
        edges=list(edges.values()),
    )


def _edge_state(record: EdgeRecord, phase: Phase, exiting: bool, min_stake: int) -> EdgeState:
    """From events, not `status.active`: that stays true after the task finished, and turns false
    when a finished edge releases its stake."""
    if record.registered_stake - record.slashed < min_stake:
        return EdgeState.SLASHED_OUT
    if exiting:
        return EdgeState.EXITED
    if phase == Phase.CANCELLED:
        return EdgeState.CANCELLED
    return EdgeState.FINISHED if phase == Phase.FINISHED else EdgeState.ACTIVE


_TASK_EVENTS = (
    "EdgeRegistered",
    "ExitRequested",
    "StakeReleased",
    "UpdateRevealed",
    "ScoresRevealed",
    "RoundTallied",
    "AttestationRevealed",
    "RoundFinalized",
    "RewardCredited",
    "Slashed",
)


def _creation(client: EdgeTuneClient, task_id: int, from_block: int) -> Any:
    """The task's TaskCreated log; looked for from `from_block`, then from genesis if that hint
    was past the creation (a later start would miss the task's first events)."""
    hint = max(0, min(from_block, client.chain.block_number()))  # nodes refuse future blocks
    for start in dict.fromkeys((hint, 0)):
        logs = client.logs("TaskCreated", start, taskId=task_id)
        if logs:
            return logs[0]
    raise HistoryUnavailable(
        f"{client.chain.url} returns no TaskCreated log for task {task_id} (a pruned node?)"
    )


def _task_events(client: EdgeTuneClient, task_id: int, from_block: int) -> dict[str, list]:
    found = {}
    for name in _TASK_EVENTS:
        found[name] = [log.args for log in client.logs(name, from_block, taskId=task_id)]
    return found


def _withdrawals(client: EdgeTuneClient, from_block: int) -> dict[str, int]:
    """Withdrawals are per account, across tasks: `withdraw()` pays everything owed at once."""
    total: dict[str, int] = defaultdict(int)
    for log in client.logs("Withdrawn", from_block):
        total[log.args.account] += log.args.amount
    return total


def _round_record(event: Any, updates: int, attestations: int, included: int) -> RoundRecord:
    return RoundRecord(
        round=event.round,
        accepted=event.accepted,
        global_hash="0x" + bytes(event.globalHash).hex(),
        global_cid=event.globalCid,
        budget=event.budget,
        paid=event.paid,
        approving_stake=event.approvingStake,
        attest_stake=event.attestStake,
        updates=updates,
        attestations=attestations,
        included=included,
    )
