"""The edge agent: a state machine whose source of truth is the chain.

Each `step()` reads the task's phase and this edge's own on-chain record in one call, then does
the one thing still missing: register; commit and reveal its update; score every revealed update
and commit and reveal the scores (stage 1); tally; attest the aggregate of the on-chain included
set (stage 2); finalize. Steps are idempotent: a step that finds its work done on chain does
nothing, and a restarted agent picks up from the state file whatever it had committed to.

Faults that pass are waited out, never fatal and never judged against anyone: `run` polls
through an RPC outage (up to `AgentSettings.outage_limit_s`), a step that cannot reach the
content store tries again at the next poll (an update that stays unreachable is judged
unavailable only a few blocks before the scoring deadline), and a revert after which the chain
shows the work done or the phase moved means another transaction was first.
"""

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from edgetune.agent.content import ContentPending, EdgeContent, Tensors
from edgetune.agent.learner import Learner
from edgetune.agent.roles import Role
from edgetune.agent.settings import AgentSettings, ChainOutageTooLong, RoundTimings
from edgetune.agent.state import (
    AgentState,
    Committed,
    CommittedAttestation,
    CommittedScores,
    CommittedUpdate,
)
from edgetune.agent.validation import Scorecard, attest_round, score_round
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.errors import (
    ChainUnavailable,
    NonceTaken,
    TransactionDropped,
    TransactionPending,
)
from edgetune.chain.reverts import RACES, ContractRevert
from edgetune.chain.types import (
    SCORE_SCALE,
    Phase,
    RevealedUpdate,
    Status,
    Step,
    commitment,
    tally_parts,
)
from edgetune.learning import adapter_to_bytes
from edgetune.storage import ContentStore, content_cid, same_cid
from edgetune.storage.errors import StorageError

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
        server_momentum: float = 0.0,
    ) -> None:
        self.client, self.task_id, self.store, self.learner = client, task_id, store, learner
        self.server_momentum = server_momentum  # the task's, from its hashed adapter spec
        self.state, self.settings, self.log = state, settings, log
        self.harm_tolerance = client.task_config(task_id).harm_tolerance / SCORE_SCALE
        self.timings: dict[int, RoundTimings] = {}
        self.scorecards: dict[int, Scorecard] = {}
        self.content = EdgeContent(store, learner, self._spending)
        self._failed: tuple[Status, str] | None = None  # the last revert retried, and where
        self._waiting: tuple[int, Phase] | None = None  # the stage waiting for content

    @property
    def address(self) -> str:
        return self.client.sender_address

    @property
    def role(self) -> Role:
        return self.settings.role

    # ------------------------------------------------------------------ the loop

    def run(self, stop_when: Callable[[], bool] = lambda: False) -> None:
        """Step until the task is over, polling with backoff while there is nothing to do or
        no chain answers; raises ChainOutageTooLong once the chain stays away too long."""
        wait = self.settings.poll_min_s
        down_since: float | None = None
        while not stop_when():
            try:
                if down_since is not None:
                    self.client.chain.block_number()  # answers again: say so before acting
                    self.log(f"chain is back after {time.monotonic() - down_since:.1f} s")
                    down_since = None
                    # A node restarted from a saved state may have lost the last transactions.
                    self.client.chain.forget_nonces()
                acted, running = self.step()
            except (ChainUnavailable, TransactionPending) as outage:
                # The transport retried this read or send for its whole budget; a pending
                # transaction stays journaled, and the next send awaits it.
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    self.log(f"chain unavailable, waiting up to {self._limit()}: {outage}")
                elif now - down_since > self.settings.outage_limit_s:
                    raise ChainOutageTooLong(
                        f"no chain for {now - down_since:.0f} s (limit {self._limit()}): {outage}"
                    ) from None
                wait = min(wait * 2, self.settings.outage_poll_max_s)
                time.sleep(wait)
                continue
            if not running:
                return
            wait = self.settings.poll_min_s if acted else min(wait * 2, self.settings.poll_max_s)
            if not acted:
                time.sleep(wait)

    def _limit(self) -> str:
        return f"{self.settings.outage_limit_s:g} s (outage_limit_s)"

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
        except ContentPending as pending:
            if self._waiting != (status.round, status.phase):  # one line per stage, not per poll
                self._waiting = (status.round, status.phase)
                self.log(f"round {status.round}: {pending}; trying again at every poll")
            return False, True
        except ContractRevert as failed:
            return self._after_revert(status, failed), True
        except (TransactionDropped, NonceTaken) as lost:
            # The node lost state, or another use of our key (an operator's withdraw) took the
            # nonce: the journaled transaction never runs. Whatever else used our key, our
            # nonces are stale too; look at the chain again and send what is still needed.
            if isinstance(lost, NonceTaken):
                self.client.chain.forget_nonces()
            self.log(f"round {status.round}: {lost}; looking again")
            return True, True
        self._waiting = None
        return True, True

    def _after_revert(self, before: Status, failed: ContractRevert) -> bool:
        """Whether a reverted action was a race (go on; True if something moved) or our own
        fault, which raises: only a revert on a chain that has not moved would repeat."""
        after = self.client.status(self.task_id)
        if _progress(after) != _progress(before):
            # Someone tallied, finalized or closed the stage first, or our own earlier
            # transaction (its receipt lost) landed: the chain has moved on past the action.
            self.log(f"round {before.round}: {failed} (another transaction was first)")
            return True
        if isinstance(failed, RACES):
            # Sent on the phase's last block, it landed after the deadline, which no status
            # read on that block shows yet: look again on the next block.
            self.log(f"round {before.round}: {failed} (another transaction was first)")
            return False
        if failed.tx_hash is not None and not failed.data and self._failed != (after, failed.error):
            # Mined and failed without error data (the transport says OutOfGas): out of gas,
            # because another edge's transaction landed between our gas estimate and ours (the
            # last commit of a stage also closes it, which costs more). Retry once with a fresh
            # estimate; the same failure on the same status again is no race.
            self._failed = (after, failed.error)
            self.log(f"round {before.round}: {failed} (out of gas after a race); retrying")
            return True
        raise failed

    def _next_action(self, status: Status) -> Callable[[Status], None] | None:
        phase = status.phase
        if phase == Phase.REGISTRATION:
            waiting = status.registered or status.active_edges < self.settings.register_after
            return None if waiting else self._register
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
        part, parts = status.tallied_parts, tally_parts(status.reveals)
        with self._spending("chain", status.round):
            ballots = self.client.score_ballots(self.task_id, status.round)
            self.client.tally(self.task_id, status.round, ballots, part)
        self.log(f"round {status.round}: tallied part {part + 1}/{parts} of {len(ballots)} ballots")

    def _finalize(self, status: Status) -> None:
        with self._spending("chain", status.round):
            receipt = self.client.finalize(self.task_id)
        round_ = status.round
        for settling in self.client.receipt_events(receipt, "RoundSettling"):
            self.log(f"round {round_}: settled {settling.settledEdges}/{settling.edges} edges")
        for event in self.client.receipt_events(receipt, "RoundFinalized"):
            outcome = "accepted" if event.accepted else "rejected"
            self.log(f"round {round_}: finalized, {outcome}, paid {event.paid / 1e18:.4f} ETH")

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
        cid = self.content.put(round_, data, "our update")
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
        self._wait_for_updates(status, revealed)
        shapley = replace(self.settings.shapley, seed=self.settings.shapley.seed + round_)
        with self._spending("shapley", round_):
            card = score_round(
                global_adapter,
                len(revealed),
                lambda i: self.content.update(round_, revealed[i]),
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
            updates = {i: self.content.update(round_, revealed[i]) for i in included}
        metric = self.learner.metric if self.role.evaluates else (lambda _adapter: 0.0)
        before = None
        if self.server_momentum:
            before = self.content.global_before_previous(self.client, self.task_id, status)
        with self._spending("shapley", round_):
            verdict = attest_round(
                global_adapter,
                updates,
                included,
                metric,
                self.harm_tolerance,
                before,
                self.server_momentum,
            )
        cid = self.content.put(round_, verdict.aggregate_bytes, "the aggregate")
        return CommittedAttestation(
            aggregate_hash=hashlib.sha256(verdict.aggregate_bytes).hexdigest(),
            aggregate_cid=cid,
            approve=verdict.approve,
            salt=secrets.token_hex(32),
        )

    # ------------------------------------------------------------------ helpers

    def fetch_global(self, status: Status) -> Tensors:
        """The current global adapter, its bytes checked against the on-chain hash first;
        ContentPending while the store cannot deliver it."""
        return self.content.global_adapter(status)

    def _wait_for_updates(self, status: Status, revealed: list[RevealedUpdate]) -> None:
        """Raises ContentPending while a revealed update cannot be fetched and the phase has
        time left: a store outage must not get an honest trainer judged invalid."""
        missing = self.content.unavailable(status.round, revealed)
        if not missing:
            return
        blocks_left = status.phase_end - self.client.chain.block_number()
        if blocks_left > self.settings.content_margin_blocks:
            raise ContentPending(f"{missing[0][1]} ({blocks_left} blocks left to wait)")
        for index, pending in missing:
            self.log(f"round {status.round}: phase ending, update {index} unavailable: {pending}")

    @contextmanager
    def _spending(self, kind: str, round_: int) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            timing = self.timings.setdefault(round_, RoundTimings())
            setattr(timing, kind, getattr(timing, kind) + time.perf_counter() - started)


def _progress(status: Status) -> tuple:
    """What a race changes: the phase and round, and this edge's own record."""
    progress = (status.tallied_parts, status.settled_edges)
    return (status.phase, status.round, status.registered, status.active, status.done, *progress)
