"""An edge's use of the content store, with an outage told apart from bad content.

A store that is down or lacks a block raises ContentPending: the agent tries the step again at
its next poll, so a brief outage costs time, never a judgement. Only bytes that arrive and do
not match their on-chain hash, or do not parse, are an invalid update at once.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch

from edgetune.agent.learner import Learner
from edgetune.chain.types import RevealedUpdate, Status
from edgetune.errors import EdgetuneError
from edgetune.learning import adapter_from_bytes
from edgetune.storage import ContentNotFound, ContentStore, StorageUnavailable, fetch_verified
from edgetune.storage.errors import StorageError

if TYPE_CHECKING:
    from edgetune.chain.client import EdgeTuneClient

Tensors = dict[str, torch.Tensor]
Timer = Callable[[str, int], AbstractContextManager[None]]  # (kind, round) -> timed block


class ContentPending(StorageError):
    """Content a step needs cannot be fetched or published right now (the store is down or lacks
    a block): the step is tried again at the next poll."""


class EdgeContent:
    """Hash-checked reads of the global adapter and revealed updates, and publishing."""

    def __init__(self, store: ContentStore, learner: Learner, timed: Timer) -> None:
        self.store, self.learner, self.timed = store, learner, timed
        self._updates: dict[tuple[int, str], Tensors] = {}  # one round's parsed updates by CID

    def global_adapter(self, status: Status) -> Tensors:
        data = self._get(status.round, status.global_cid, status.global_hash, "global adapter")
        return adapter_from_bytes(data, self.learner.shapes())

    def global_before_previous(
        self, client: "EdgeTuneClient", task_id: int, status: Status
    ) -> Tensors | None:
        """G(r-2), the global round r-1 started from (server momentum's other state), from the
        chain: round r-2's `RoundFinalized`, or the task's initial global in round 2; None in
        round 1."""
        if status.round < 2:
            return None
        if status.round == 2:
            config = client.task_config(task_id)
            cid, sha256 = config.initial_global_cid, config.initial_global_hash
        else:
            (event,) = client.round_events(task_id, status.round - 2, "RoundFinalized")
            cid, sha256 = event.globalCid, event.globalHash
        data = self._get(status.round, cid, sha256, f"round {status.round - 2}'s global adapter")
        return adapter_from_bytes(data, self.learner.shapes())

    def update(self, round_: int, update: RevealedUpdate) -> Tensors:
        """A revealed update, parsed once a round (scoring may be tried again after an outage);
        any EdgetuneError but ContentPending means the update itself is invalid."""
        key = (round_, update.cid)
        if key not in self._updates:
            data = self._get(round_, update.cid, update.update_hash, f"update {update.index}")
            tensors = adapter_from_bytes(data, self.learner.shapes(trained_only=True))
            self._updates = {k: v for k, v in self._updates.items() if k[0] == round_}
            self._updates[key] = tensors
        return self._updates[key]

    def unavailable(
        self, round_: int, revealed: list[RevealedUpdate]
    ) -> list[tuple[int, ContentPending]]:
        """The revealed updates the store cannot deliver now (invalid ones are not listed: the
        scoring rejects them)."""
        missing = []
        for update in revealed:
            try:
                self.update(round_, update)
            except ContentPending as pending:
                missing.append((update.index, pending))
            except EdgetuneError:
                continue
        return missing

    def put(self, round_: int, data: bytes, what: str) -> str:
        with self.timed("storage", round_):
            try:
                return self.store.put(data)
            except StorageUnavailable as down:
                raise ContentPending(f"{what} cannot be published yet: {down}") from None

    def _get(self, round_: int, cid: str, sha256: bytes, what: str) -> bytes:
        with self.timed("storage", round_):
            try:
                return fetch_verified(self.store, cid, sha256)
            except (ContentNotFound, StorageUnavailable) as missing:
                raise ContentPending(f"{what} {cid} cannot be fetched yet: {missing}") from None
