"""A task's reward history, rebuilt from the contract's events and state alone (no local files),
so anyone can audit who earned what: `edgetune rewards` renders it, tests recompute it."""

from collections import defaultdict
from dataclasses import dataclass, field

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.types import AGREEMENT_SCALE, SCORE_SCALE


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
    address: str
    stake: int = 0
    active: bool = False
    rounds_joined: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)  # round -> median Shapley score
    agreement: dict[int, float] = field(default_factory=dict)  # round -> 0..1 with the medians
    trainer_reward: dict[int, int] = field(default_factory=dict)  # round -> wei
    validator_reward: dict[int, int] = field(default_factory=dict)
    slashed: int = 0
    withdrawn: int = 0
    owed: int = 0

    @property
    def earned(self) -> int:
        return sum(self.trainer_reward.values()) + sum(self.validator_reward.values())

    def earned_in(self, round_: int) -> int:
        return self.trainer_reward.get(round_, 0) + self.validator_reward.get(round_, 0)


@dataclass
class TaskHistory:
    task_id: int
    pool: int
    rounds_planned: int
    phase: str
    current_round: int
    rounds: list[RoundRecord]
    edges: list[EdgeRecord]


def load_history(client: EdgeTuneClient, task_id: int, from_block: int = 0) -> TaskHistory:
    """Reads every event of `task_id` since `from_block` plus the current state."""
    events = _task_events(client, task_id, from_block)
    edges = {e.edge: EdgeRecord(e.edge) for e in events["EdgeRegistered"]}
    for e in events["EdgeLeft"]:
        edges.pop(e.edge, None)
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
    withdrawn = _withdrawals(client, from_block)
    for record in edges.values():
        status = client.status(task_id, record.address)
        record.stake, record.active, record.owed = status.stake, status.active, status.owed
        record.withdrawn = withdrawn.get(record.address, 0)
    (created,) = events["TaskCreated"]
    status = client.status(task_id)
    rounds = [
        _round_record(e, updates[e.round], attestations[e.round], included[e.round])
        for e in events["RoundFinalized"]
    ]
    return TaskHistory(
        task_id=task_id,
        pool=created.pool,
        rounds_planned=created.config.rounds,
        phase=status.phase.name,
        current_round=status.round,
        rounds=rounds,
        edges=sorted(edges.values(), key=lambda r: r.address),
    )


_TASK_EVENTS = (
    "TaskCreated",
    "EdgeRegistered",
    "EdgeLeft",
    "UpdateRevealed",
    "ScoresRevealed",
    "RoundTallied",
    "AttestationRevealed",
    "RoundFinalized",
    "RewardCredited",
    "Slashed",
)


def _task_events(client: EdgeTuneClient, task_id: int, from_block: int) -> dict[str, list]:
    found = {}
    for name in _TASK_EVENTS:
        event = client.contract.events[name]()
        logs = event.get_logs(from_block=from_block, argument_filters={"taskId": task_id})
        found[name] = [log.args for log in logs]
    return found


def _withdrawals(client: EdgeTuneClient, from_block: int) -> dict[str, int]:
    """Withdrawals are per account, across tasks: `withdraw()` pays everything owed at once."""
    total: dict[str, int] = defaultdict(int)
    for log in client.contract.events.Withdrawn().get_logs(from_block=from_block):
        total[log.args.account] += log.args.amount
    return total


def _round_record(event, updates: int, attestations: int, included: int) -> RoundRecord:
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
