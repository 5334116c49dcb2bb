"""The edge agent: a state machine whose source of truth is the chain.

Each `step()` reads the task's phase and this edge's own on-chain record in one call, then does
the one thing still missing: register; commit and reveal its update; score every revealed update
and commit and reveal the scores (stage 1); tally; attest the aggregate of the on-chain included
set (stage 2); finalize. Steps are idempotent: a step that finds its work done on chain does
nothing, and a restarted agent picks up from the state file whatever it had committed to.
"""

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from edgetune.agent.learner import Learner
from edgetune.agent.roles import Role
from edgetune.agent.state import (
    AgentState,
    Committed,
    CommittedAttestation,
    CommittedScores,
    CommittedUpdate,
)
from edgetune.agent.validation import Scorecard, attest_round, score_round
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.reverts import RACES, ContractRevert
from edgetune.chain.types import SCORE_SCALE, Phase, Status, Step, commitment
from edgetune.contribution import ShapleyConfig
from edgetune.learning import adapter_from_bytes, adapter_to_bytes
from edgetune.storage import (
    ContentNotFound,
    ContentStore,
    StorageUnavailable,
    content_cid,
    fetch_verified,
    same_cid,
)
from edgetune.storage.errors import StorageError

Tensors = dict[str, torch.Tensor]
# (commit phase, its step bit, the state file's record kind)
_COMMITS = {
    Phase.UPDATE_COMMIT: (Step.UPDATE_COMMITTED, "update"),
    Phase.SCORE_COMMIT: (Step.SCORES_COMMITTED, "scores"),
    Phase.ATTEST_COMMIT: (Step.ATTEST_COMMITTED, "attestation"),
}
_REVEALS = {
    Phase.UPDATE_REVEAL: Phase.UPDATE_COMMIT,
    Phase.SCORE_REVEAL: Phase.SCORE_COMMIT,
    Phase.ATTEST_REVEAL: Phase.ATTEST_COMMIT,
}


class UpdatePublishFailed(StorageError):
    """The store named the update's bytes by another CID than the one committed to."""


@dataclass
class AgentSettings:
    stake: int
    shapley: ShapleyConfig = field(default_factory=ShapleyConfig)
    role: Role = field(default_factory=Role)
    poll_min_s: float = 0.05
    poll_max_s: float = 2.0
    # A missing block may be a brief content outage: retry before calling an update invalid.
    fetch_retries: int = 3
    fetch_backoff_s: float = 0.5


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
        self.harm_tolerance = client.task_config(task_id).harm_tolerance / SCORE_SCALE
        self.timings: dict[int, RoundTimings] = {}
        self.scorecards: dict[int, Scorecard] = {}

    @property
    def address(self) -> str:
        return self.client.sender_address

    @property
    def role(self) -> Role:
        return self.settings.role

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
        except RACES as race:
            self.log(f"round {status.round}: {race} (another transaction was first)")
        except ContractRevert as failed:
            if failed.tx_hash is None or failed.data:
                raise
            # Mined, failed, and its replay on the block's state names no error: out of gas,
            # because another edge's transaction landed between our gas estimate and ours (the
            # last commit of a stage also closes it, which costs more). Nothing changed on
            # chain; look again and retry with a fresh estimate.
            self.log(f"round {status.round}: {failed} (out of gas after a race); retrying")
        return True, True

    def _next_action(self, status: Status) -> Callable[[Status], None] | None:
        phase = status.phase
        if phase == Phase.REGISTRATION:
            return None if status.registered else self._register
        if phase == Phase.FINALIZABLE:
            return self._finalize
        if phase == Phase.TALLY:
            return self._tally
        if not status.active:
            return None
        if phase in _COMMITS:
            return None if status.has(_COMMITS[phase][0]) else self._commit
        if phase in _REVEALS:
            committed = _COMMITS[_REVEALS[phase]][0]
            if status.has(committed) and not status.has(Step(committed << 1)):
                return self._reveal
        return None

    # ------------------------------------------------------------------ actions

    def _register(self, status: Status) -> None:
        self.client.register(self.task_id, self.settings.stake)
        self.log(f"registered with a stake of {self.settings.stake / 1e18:g} ETH")

    def _commit(self, status: Status) -> None:
        round_, stage = status.round, status.phase
        kind = _COMMITS[stage][1]
        record = self.state.get(round_, kind) or self._prepare(status, kind)
        digest = commitment(
            self.client.chain.chain_id,
            self.client.address,
            self.task_id,
            round_,
            stage,
            self.address,
            record.payload(),
            bytes.fromhex(record.salt),
        )
        with self._spending("chain", round_):
            self.client.commit(self.task_id, round_, stage, digest)
        self.log(f"round {round_}: committed {kind}")

    def _prepare(self, status: Status, kind: str) -> Committed:
        """Does the stage's work and saves what it commits to before the commit is sent, so a
        crash between the two loses nothing (see state.py)."""
        if kind == "update":
            record: Committed = self._train(status)
        elif kind == "scores":
            record = self._score(status)
        else:
            record = self._attest(status)
        self.state.save(status.round, record)
        return record

    def _reveal(self, status: Status) -> None:
        round_ = status.round
        kind = _COMMITS[_REVEALS[status.phase]][1]
        record = self.state.get(round_, kind)
        if record is None:
            self.log(f"round {round_}: committed {kind} but the state file lost it; cannot reveal")
            return
        salt = bytes.fromhex(record.salt)
        if isinstance(record, CommittedUpdate):
            if not self._source_revealed(round_):
                return
            self._publish_update(round_, record)
            with self._spending("chain", round_):
                self.client.reveal_update(
                    self.task_id, round_, bytes.fromhex(record.update_hash), record.cid, salt
                )
        elif isinstance(record, CommittedScores):
            with self._spending("chain", round_):
                self.client.reveal_scores(self.task_id, round_, record.ballot(), salt)
        else:
            with self._spending("chain", round_):
                self.client.reveal_attestation(self.task_id, round_, record.attestation(), salt)
        self.log(f"round {round_}: revealed {kind}")

    def _tally(self, status: Status) -> None:
        with self._spending("chain", status.round):
            ballots = self.client.score_ballots(self.task_id, status.round)
            self.client.tally(self.task_id, status.round, ballots)
        self.log(f"round {status.round}: tallied {len(ballots)} score ballots")

    def _finalize(self, status: Status) -> None:
        with self._spending("chain", status.round):
            receipt = self.client.finalize(self.task_id)
        (event,) = self.client.receipt_events(receipt, "RoundFinalized")
        outcome = "accepted" if event.accepted else "rejected"
        self.log(f"round {status.round}: finalized, {outcome}, paid {event.paid / 1e18:.4f} ETH")

    # ------------------------------------------------------------------ the work of each stage

    def _train(self, status: Status) -> CommittedUpdate:
        round_ = status.round
        global_adapter = self.fetch_global(status)
        trained_keys = self.learner.shapes(trained_only=True)
        with self._spending("training", round_):
            if self.role.replaces_training():
                tensors = self.role.fake_update(
                    {k: global_adapter[k] for k in trained_keys}, round_
                )
            else:
                tensors = self.role.perturb(self.learner.train(global_adapter, round_), round_)
        data = adapter_to_bytes(tensors)
        # Published only at reveal, so nobody can copy it before the commit phase closes; kept
        # on disk until then, so a restarted agent can still reveal it.
        self.state.save_blob(round_, data)
        return CommittedUpdate(
            update_hash=hashlib.sha256(data).hexdigest(),
            cid=content_cid(data),
            salt=secrets.token_bytes(32).hex(),
        )

    def _publish_update(self, round_: int, record: CommittedUpdate) -> None:
        data = self.state.blob(round_)
        if data is None or hashlib.sha256(data).hexdigest() != record.update_hash:
            raise UpdatePublishFailed(f"round {round_}: the committed update's bytes were lost")
        with self._spending("storage", round_):
            cid = self.store.put(data)
        if not same_cid(cid, record.cid):
            raise UpdatePublishFailed(f"store returned CID {cid}, committed to {record.cid}")

    def _source_revealed(self, round_: int) -> bool:
        """A copier waits for its source's reveal; everyone else reveals at once."""
        source = self.role.copy_of
        if source is None:
            return True
        return any(u.edge == source for u in self.client.revealed_updates(self.task_id, round_))

    def _score(self, status: Status) -> CommittedScores:
        round_ = status.round
        global_adapter = self.fetch_global(status)
        with self._spending("chain", round_):
            revealed = self.client.revealed_updates(self.task_id, round_)
        if not self.role.evaluates:
            everything = (1 << len(revealed)) - 1
            return CommittedScores(everything, 0, [0] * len(revealed), secrets.token_hex(32))
        shapley = replace(self.settings.shapley, seed=self.settings.shapley.seed + round_)
        with self._spending("shapley", round_):
            card = score_round(
                global_adapter,
                len(revealed),
                lambda i: self._fetch_update(round_, revealed[i].cid, revealed[i].update_hash),
                self.learner.metric,
                shapley,
            )
        for index, reason in card.rejected.items():
            self.log(f"round {round_}: update {index} is invalid: {reason}")
        self.scorecards[round_] = card
        return CommittedScores(card.valid_mask, card.copy_mask, card.scores, secrets.token_hex(32))

    def _attest(self, status: Status) -> CommittedAttestation:
        round_ = status.round
        global_adapter = self.fetch_global(status)
        included = [i for i in range(status.reveals) if status.included_mask >> i & 1]
        card = self.scorecards.get(round_)
        if card is not None and all(i in card.updates for i in included):
            updates = card.updates
        else:  # restarted, lazy, or judged an included update invalid: fetch what is included
            revealed = self.client.revealed_updates(self.task_id, round_)
            updates = {
                i: self._fetch_update(round_, revealed[i].cid, revealed[i].update_hash)
                for i in included
            }
        metric = self.learner.metric if self.role.evaluates else (lambda _adapter: 0.0)
        with self._spending("shapley", round_):
            verdict = attest_round(global_adapter, updates, included, metric, self.harm_tolerance)
        with self._spending("storage", round_):
            cid = self.store.put(verdict.aggregate_bytes)
        return CommittedAttestation(
            aggregate_hash=hashlib.sha256(verdict.aggregate_bytes).hexdigest(),
            aggregate_cid=cid,
            approve=verdict.approve,
            salt=secrets.token_hex(32),
        )

    # ------------------------------------------------------------------ helpers

    def fetch_global(self, status: Status) -> Tensors:
        """The current global adapter, its bytes checked against the on-chain hash first."""
        with self._spending("storage", status.round):
            data = fetch_verified(self.store, status.global_cid, status.global_hash)
        return adapter_from_bytes(data, self.learner.shapes())

    def _fetch_update(self, round_: int, cid: str, update_hash: bytes) -> Tensors:
        """A revealed update, hash-checked and parsed; a missing block or an unreachable store
        is retried with backoff first, since it may be a brief outage, not a withheld update."""
        delay = self.settings.fetch_backoff_s
        for _ in range(self.settings.fetch_retries):
            try:
                return self._fetch_once(round_, cid, update_hash)
            except (ContentNotFound, StorageUnavailable):
                time.sleep(delay)
                delay *= 2
        return self._fetch_once(round_, cid, update_hash)

    def _fetch_once(self, round_: int, cid: str, update_hash: bytes) -> Tensors:
        with self._spending("storage", round_):
            data = fetch_verified(self.store, cid, update_hash)
        return adapter_from_bytes(data, self.learner.shapes(trained_only=True))

    @contextmanager
    def _spending(self, kind: str, round_: int) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            timing = self.timings.setdefault(round_, RoundTimings())
            setattr(timing, kind, getattr(timing, kind) + time.perf_counter() - started)
