"""Federations the agent tests share, and an independent re-statement of the contract's rules.

`run_federation` runs the one in-process executor, with one extra knob the fairness tests need:
`twins`, edges that hold a copy of another edge's training data but train with their own seed
(an honest near-duplicate, unlike a copier, which copies the other edge's update).

The `expected_*` functions recompute stage 1 and the payout from the events alone, written
from docs/protocol.md and not from the contract or the agent code, so tests compare the chain
with arithmetic done here, to the wei.
"""

import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgetune.agent.federation import (
    FederationConfig,
    FederationResult,
    execute_in_process,
    prepare_edge_data,
    text_test_metric,
)
from edgetune.agent.launch import TRAIN_FILE
from edgetune.chain.connect import Chain, connect
from edgetune.chain.types import BPS, ScoreBallot

from ..contracts.rounds import expected_tally as reference_tally
from ..contracts.rounds import one_run_gas_estimates

ETHER = 10**18


def run_federation(
    config: FederationConfig,
    twins: dict[int, int] | None = None,
    log: Callable[[str], None] = lambda _: None,
    chain: Chain | None = None,
) -> FederationResult:
    """The federation in one process on `chain` (default: a fresh embedded chain); edge i of
    `twins` {i: j} trains on edge j's training data (with its own training seed and its own
    validation data)."""
    if chain is None:
        chain = connect("embedded")
        one_run_gas_estimates(chain)  # gasUsed is unchanged; estimating takes one run, not ~15
    test = prepare_edge_data(config)
    plan = config.plan([account.address for account in chain.accounts])
    for twin, source in (twins or {}).items():
        data = plan.edges[source].data_dir / TRAIN_FILE
        shutil.copyfile(data, plan.edges[twin].data_dir / TRAIN_FILE)
    return execute_in_process(plan, chain, text_test_metric(test), log)


# ---------------------------------------------------------------------- reading the chain


_TASK_EVENTS = (
    "TaskCreated",
    "EdgeRegistered",
    "UpdateRevealed",
    "ScoresRevealed",
    "RoundTallied",
    "AttestationRevealed",
    "RoundFinalized",
    "RewardCredited",
    "Slashed",
)


class Chronicle:
    """Every event of a finished federation's task, read once: each get_logs scans the whole
    embedded chain (seconds), so tests share one reading."""

    def __init__(self, result: FederationResult) -> None:
        self.result = result
        self._events: dict[str, list] = {}
        for name in _TASK_EVENTS:
            event = result.owner.contract.events[name]()
            logs = event.get_logs(
                from_block=result.deployment_block,
                argument_filters={"taskId": result.task.task_id},
            )
            self._events[name] = [log.args for log in logs]
        self.rounds = [self._round(finalized) for finalized in self._events["RoundFinalized"]]

    def events(self, name: str) -> list:
        return self._events[name]

    def _round(self, finalized) -> "RoundEvents":
        r = finalized.round

        def of(name: str) -> list:
            return [e for e in self._events[name] if e.round == r]

        reveals = sorted(of("UpdateRevealed"), key=lambda e: e.index)
        tallied = of("RoundTallied")
        return RoundEvents(
            round=r,
            reveals=reveals,
            ballots=[
                ScoreBallot.unpack(e.edge, e.validMask, e.copyMask, bytes(e.scores))
                for e in of("ScoresRevealed")
            ],
            tallied=tallied[0] if tallied else None,
            attestations=of("AttestationRevealed"),
            finalized=finalized,
            credits=of("RewardCredited"),
            slashes=of("Slashed"),
        )

    def stakes_by_round(self) -> dict[int, dict[str, int]]:
        """Each edge's stake while round r was scored: registered stake less earlier slashes."""
        stake = {e.edge: e.stake for e in self._events["EdgeRegistered"]}
        out = {}
        for record in self.rounds:
            out[record.round] = dict(stake)
            for slash in record.slashes:
                stake[slash.edge] -= slash.amount
        return out


@dataclass(frozen=True)
class RoundEvents:
    """One round, as the chain recorded it."""

    round: int
    reveals: list  # UpdateRevealed, in reveal order
    ballots: list[ScoreBallot]  # reveal order of the ballots
    tallied: object  # RoundTallied
    attestations: list  # AttestationRevealed
    finalized: object  # RoundFinalized
    credits: list  # RewardCredited
    slashes: list  # Slashed

    @property
    def authors(self) -> list[str]:
        return [e.edge for e in self.reveals]


# ---------------------------------------------------------------------- the rules, restated


@dataclass(frozen=True)
class Tally:
    valid: int
    copies: int
    included: int
    medians: list[int]
    agreements: list[int]  # per ballot, millionths


def expected_tally(
    ballots: Sequence[ScoreBallot], stakes: dict[str, int], reveals: int, tau: int
) -> Tally:
    """Stage 1 by the contract tests' restatement of the rules (tests/contracts/rounds.py), with
    each ballot's stake looked up by scorer."""
    t = reference_tally([stakes[b.scorer] for b in ballots], ballots, reveals, tau)
    return Tally(t.valid, t.copies, t.included, list(t.medians), list(t.agreements))


def expected_rewards(
    record: RoundEvents, tally: Tally, validator_share_bps: int
) -> dict[tuple[str, int], int]:
    """{(edge, kind): wei} of an accepted round: the trainer pool in proportion to the positive
    medians of included updates, the validator pool in proportion to the agreement of those
    that approved the winning (hash, CID)."""
    budget = record.finalized.budget
    trainer_pool = budget * (BPS - validator_share_bps) // BPS
    validator_pool = budget - trainer_pool
    positive = {
        record.authors[j]: max(m, 0) for j, m in enumerate(tally.medians) if tally.included >> j & 1
    }
    agreement = dict(zip((b.scorer for b in record.ballots), tally.agreements, strict=True))
    approvers = {
        a.edge: agreement.get(a.edge, 0)
        for a in record.attestations
        if a.approve and a.candidate == record.finalized.candidate
    }
    out: dict[tuple[str, int], int] = defaultdict(int)
    median_total, agreement_total = sum(positive.values()), sum(approvers.values())
    for edge, m in positive.items():
        if m:
            out[(edge, 0)] += trainer_pool * m // median_total
    for edge, a in approvers.items():
        if a:
            out[(edge, 1)] += validator_pool * a // agreement_total
    return {key: wei for key, wei in out.items() if wei}


def rewards_of(record: RoundEvents) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = defaultdict(int)
    for credit in record.credits:
        out[(credit.edge, credit.kind)] += credit.amount
    return dict(out)


def total_rewards(rounds: Sequence[RoundEvents], kind: int) -> dict[str, int]:
    """Each edge's credited reward of one kind (0 trainer, 1 validator) over all rounds."""
    out: dict[str, int] = defaultdict(int)
    for record in rounds:
        for credit in record.credits:
            if credit.kind == kind:
                out[credit.edge] += credit.amount
    return out
