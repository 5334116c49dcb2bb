"""What an edge must remember between its own transactions: the salts and contents it committed.

The chain is the source of truth for *what happened*; this file holds only the secrets needed to
finish what was started (a reveal needs the salt). Each entry is written, flushed and atomically
renamed into place *before* the transaction that depends on it is sent, so a crash at any point
loses nothing: a restarted agent reads it back and resumes the round.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgetune.chain.types import Ballot
from edgetune.errors import EdgetuneError


class StateFileError(EdgetuneError):
    """The agent's state file exists but cannot be read (corrupt, or another task's)."""


@dataclass(frozen=True)
class CommittedUpdate:
    update_hash: str  # hex
    cid: str
    samples: int
    salt: str  # hex


@dataclass(frozen=True)
class CommittedVote:
    valid_mask: int
    included_mask: int
    aggregate_hash: str  # hex
    aggregate_cid: str
    approve: bool
    scores: list[int]
    salt: str  # hex

    def ballot(self) -> Ballot:
        return Ballot(
            self.valid_mask,
            self.included_mask,
            bytes.fromhex(self.aggregate_hash),
            self.aggregate_cid,
            self.approve,
            tuple(self.scores),
        )


class AgentState:
    """A small JSON file per (contract, task, edge): committed updates and votes by round."""

    def __init__(self, path: Path, contract: str, task_id: int, edge: str) -> None:
        self.path = Path(path)
        self.contract, self.task_id, self.edge = contract, task_id, edge
        self._data = self._load()

    def update(self, round_: int) -> CommittedUpdate | None:
        entry = self._data["rounds"].get(str(round_), {}).get("update")
        return CommittedUpdate(**entry) if entry else None

    def vote(self, round_: int) -> CommittedVote | None:
        entry = self._data["rounds"].get(str(round_), {}).get("vote")
        return CommittedVote(**entry) if entry else None

    def save_update(self, round_: int, update: CommittedUpdate) -> None:
        self._data["rounds"].setdefault(str(round_), {})["update"] = asdict(update)
        self._write()

    def save_vote(self, round_: int, vote: CommittedVote) -> None:
        self._data["rounds"].setdefault(str(round_), {})["vote"] = asdict(vote)
        self._write()

    def _load(self) -> dict:
        if not self.path.exists():
            return {**self._owner(), "rounds": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise StateFileError(f"cannot read agent state {self.path}: {exc}") from None
        # Task ids restart at 1 in every deployment: another contract's salts must not be reused.
        owner = {key: data.get(key) for key in self._owner()}
        if owner != self._owner():
            raise StateFileError(
                f"{self.path} belongs to contract {owner['contract']} task {owner['task_id']} "
                f"edge {owner['edge']}, not contract {self.contract} task {self.task_id} edge "
                f"{self.edge}; move it away to start afresh"
            )
        return data

    def _owner(self) -> dict:
        return {"contract": self.contract, "task_id": self.task_id, "edge": self.edge}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(self._data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
