"""The edge agent: a state machine whose source of truth is the chain.

Each `step()` reads the task's phase and this edge's own on-chain record in one call, then does
the one thing still missing (register, commit, reveal, vote, reveal the vote, finalize). Steps
are idempotent: a step that finds its work done on chain does nothing, and a restarted agent
picks up from the state file whatever it had committed to before a crash.
"""

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from edgetune.agent.learner import Learner
from edgetune.agent.state import AgentState, CommittedUpdate, CommittedVote
from edgetune.agent.validation import Verdict, judge_round
from edgetune.chain.client import ContractRevert, EdgeTuneClient
from edgetune.chain.types import SCORE_SCALE, Phase, Status, update_commitment, vote_commitment
from edgetune.contribution import ShapleyConfig
from edgetune.learning import adapter_from_bytes, adapter_to_bytes
from edgetune.storage import ContentStore, fetch_verified

# Test and demonstration roles: a free rider resubmits the global adapter (a zero change); a
# poisoner submits a well-formed but destructive update (large seeded noise).
Behaviour = Literal["honest", "free-rider", "poisoner"]
_POISON_SCALE = 10.0
# Reverts that only mean another transaction got there first (a phase closed early, someone else
# finalized): the next step re-reads the chain and carries on.
_RACES = {"EdgeTuneWrongPhase", "EdgeTuneWrongRound", "EdgeTuneAlreadyCommitted"}


@dataclass
class AgentSettings:
    stake: int
    shapley: ShapleyConfig = field(default_factory=ShapleyConfig)
    behaviour: Behaviour = "honest"
    seed: int = 0  # of the poisoner's noise
    poll_min_s: float = 0.05
    poll_max_s: float = 2.0


@dataclass
class RoundTimings:
    """Seconds spent per round on each kind of work (the figures the federation reports)."""

    training: float = 0.0
    storage: float = 0.0
    chain: float = 0.0
    shapley: float = 0.0


class EdgeAgent:
    def __init__(
        self,
        client: EdgeTuneClient,
        task_id: int,
        store: ContentStore,
        learner: Learner,
        state: AgentState,
        settings: AgentSettings,
        log: Callable[[str], None] = print,
    ) -> None:
        self.client, self.task_id, self.store, self.learner = client, task_id, store, learner
        self.state, self.settings, self.log = state, settings, log
        task = client.task_config(task_id)
        self.harm_tolerance = task.harm_tolerance / SCORE_SCALE
        self.max_samples = task.max_samples
        self.timings: dict[int, RoundTimings] = {}
        self.verdicts: dict[int, Verdict] = {}

    @property
    def address(self) -> str:
        return self.client.sender_address

    # ------------------------------------------------------------------ the loop

    def run(self, stop_when: Callable[[], bool] = lambda: False) -> None:
        """Step until the task is over, polling with backoff while there is nothing to do."""
        wait = self.settings.poll_min_s
        while not stop_when():
            acted, running = self.step()
            if not running:
                return
            wait = self.settings.poll_min_s if acted else min(wait * 2, self.settings.poll_max_s)
            if not acted:
                time.sleep(wait)

    def step(self) -> tuple[bool, bool]:
        """One look at the chain and at most one action: (acted, task still running)."""
        status = self.client.status(self.task_id)
        if status.phase in (Phase.FINISHED, Phase.CANCELLED):
            return False, False
        action = self._next_action(status)
        if action is None:
            return False, True
        try:
            action(status)
        except ContractRevert as revert:
            if revert.error not in _RACES:
                raise
            self.log(f"round {status.round}: {revert.error} (another transaction was first)")
        return True, True

    def _next_action(self, status: Status) -> Callable[[Status], None] | None:
        phase = status.phase
        if phase == Phase.REGISTRATION:
            return None if status.registered else self._register
        if not status.active and phase != Phase.FINALIZABLE:
            return None
        if phase == Phase.UPDATE_COMMIT and not status.update_committed:
            return self._commit_update
        if phase == Phase.UPDATE_REVEAL and status.update_committed and not status.update_revealed:
            return self._reveal_update
        if phase == Phase.VOTE_COMMIT and not status.vote_committed:
            return self._commit_vote
        if phase == Phase.VOTE_REVEAL and status.vote_committed and not status.vote_revealed:
            return self._reveal_vote
        if phase == Phase.FINALIZABLE:
            return self._finalize
        return None

    # ------------------------------------------------------------------ actions

    def _register(self, status: Status) -> None:
        self.client.register(self.task_id, self.settings.stake)
        self.log(f"registered with a stake of {self.settings.stake / 1e18:g} ETH")

    def _commit_update(self, status: Status) -> None:
        round_ = status.round
        update = self.state.update(round_) or self._train_and_publish(status)
        commitment = update_commitment(
            self.client.chain.chain_id,
            self.client.address,
            self.task_id,
            round_,
            self.address,
            bytes.fromhex(update.update_hash),
            update.cid,
            update.samples,
            bytes.fromhex(update.salt),
        )
        with self._spending("chain", round_):
            self.client.commit_update(self.task_id, round_, commitment)
        self.log(f"round {round_}: committed update {update.cid[:16]}… ({update.samples} samples)")

    def _train_and_publish(self, status: Status) -> CommittedUpdate:
        round_ = status.round
        global_adapter = self.fetch_global(status)
        with self._spending("training", round_):
            tensors = self._train(global_adapter, round_)
        data = adapter_to_bytes(tensors)
        with self._spending("storage", round_):
            cid = self.store.put(data)
        update = CommittedUpdate(
            update_hash=hashlib.sha256(data).hexdigest(),
            cid=cid,
            samples=min(self.learner.samples, self.max_samples),
            salt=secrets.token_bytes(32).hex(),
        )
        self.state.save_update(round_, update)  # before the commit transaction: see state.py
        return update

    def _train(self, global_adapter: dict[str, torch.Tensor], round_: int) -> dict:
        trained = {k: global_adapter[k] for k in self.learner.shapes(trained_only=True)}
        if self.settings.behaviour == "free-rider":
            return trained
        if self.settings.behaviour == "poisoner":
            noise = torch.Generator().manual_seed(self.settings.seed + round_)
            return {
                k: v + _POISON_SCALE * torch.randn(v.shape, generator=noise)
                for k, v in trained.items()
            }
        return self.learner.train(global_adapter, round_)

    def _reveal_update(self, status: Status) -> None:
        round_ = status.round
        update = self.state.update(round_)
        if update is None:
            self.log(f"round {round_}: committed but the state file lost the salt; cannot reveal")
            return
        with self._spending("chain", round_):
            self.client.reveal_update(
                self.task_id,
                round_,
                bytes.fromhex(update.update_hash),
                update.cid,
                update.samples,
                bytes.fromhex(update.salt),
            )
        self.log(f"round {round_}: revealed update")

    def _commit_vote(self, status: Status) -> None:
        round_ = status.round
        vote = self.state.vote(round_) or self._judge_and_publish(status)
        commitment = vote_commitment(
            self.client.chain.chain_id,
            self.client.address,
            self.task_id,
            round_,
            self.address,
            vote.ballot(),
            bytes.fromhex(vote.salt),
        )
        with self._spending("chain", round_):
            self.client.commit_vote(self.task_id, round_, commitment)
        verdict = "approve" if vote.approve else "reject"
        self.log(f"round {round_}: committed vote ({verdict}, scores {vote.scores})")

    def _judge_and_publish(self, status: Status) -> CommittedVote:
        round_ = status.round
        global_adapter = self.fetch_global(status)
        with self._spending("chain", round_):
            revealed = self.client.revealed_updates(self.task_id, round_)
        trained_shapes = self.learner.shapes(trained_only=True)

        def fetch(index: int) -> dict[str, torch.Tensor]:
            update = revealed[index]
            with self._spending("storage", round_):
                data = fetch_verified(self.store, update.cid, update.update_hash)
            return adapter_from_bytes(data, trained_shapes)

        shapley = replace(self.settings.shapley, seed=self.settings.shapley.seed + round_)
        with self._spending("shapley", round_):
            samples = [u.samples for u in revealed]
            verdict = judge_round(
                global_adapter, samples, fetch, self.learner.metric, self.harm_tolerance, shapley
            )
        for index, reason in verdict.rejected.items():
            self.log(f"round {round_}: update {index} is invalid: {reason}")
        self.verdicts[round_] = verdict
        with self._spending("storage", round_):
            cid = self.store.put(verdict.aggregate_bytes)
        vote = CommittedVote(
            valid_mask=verdict.valid_mask,
            included_mask=verdict.included_mask,
            aggregate_hash=hashlib.sha256(verdict.aggregate_bytes).hexdigest(),
            aggregate_cid=cid,
            approve=verdict.approve,
            scores=verdict.scores,
            salt=secrets.token_bytes(32).hex(),
        )
        self.state.save_vote(round_, vote)  # before the commit transaction: see state.py
        return vote

    def _reveal_vote(self, status: Status) -> None:
        round_ = status.round
        vote = self.state.vote(round_)
        if vote is None:
            self.log(f"round {round_}: vote committed but the state file lost it; cannot reveal")
            return
        salt = bytes.fromhex(vote.salt)
        with self._spending("chain", round_):
            self.client.reveal_vote(self.task_id, round_, vote.ballot(), salt)
        self.log(f"round {round_}: revealed vote")

    def _finalize(self, status: Status) -> None:
        with self._spending("chain", status.round):
            receipt = self.client.finalize(self.task_id)
        (event,) = self.client.receipt_events(receipt, "RoundFinalized")
        outcome = "accepted" if event.accepted else "rejected"
        self.log(f"round {status.round}: finalized, {outcome}, paid {event.paid / 1e18:.4f} ETH")

    # ------------------------------------------------------------------ helpers

    def fetch_global(self, status: Status) -> dict[str, torch.Tensor]:
        """The current global adapter, its bytes checked against the on-chain hash first."""
        with self._spending("storage", status.round):
            data = fetch_verified(self.store, status.global_cid, status.global_hash)
        return adapter_from_bytes(data, self.learner.shapes())

    @contextmanager
    def _spending(self, kind: str, round_: int) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            timing = self.timings.setdefault(round_, RoundTimings())
            setattr(timing, kind, getattr(timing, kind) + time.perf_counter() - started)
