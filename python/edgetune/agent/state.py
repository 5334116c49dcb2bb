"""What an edge must remember between its own transactions: the salts and contents it committed.

The chain is the source of truth for *what happened*; this file holds only the secrets needed to
finish what was started (a reveal needs the salt). Each entry is written, flushed and atomically
renamed into place *before* the transaction that depends on it is sent, so a crash at any point
loses nothing: a restarted agent reads it back and resumes the round. A write that fails (a full
disk, say) raises StateFileError, so the transaction is never sent, and leaves no temporary
file behind.
"""

import contextlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgetune.agent.codec import Undecodable, decode, encode
from edgetune.chain.types import Attestation, ScoreBallot, update_payload
from edgetune.errors import EdgetuneError


class StateFileError(EdgetuneError):
    """The agent's state file cannot be read (corrupt, or another task's) or written (a full
    disk, a read-only folder)."""


class _HexFields:
    """Checks at construction that the fields named `..._hash` or `salt` hold hex, so a damaged
    state file is refused when read, not when a reveal needs the bytes."""

    def __post_init__(self) -> None:
        for name in (f.name for f in fields(self)):  # type: ignore[arg-type]
            if name == "salt" or name.endswith("_hash"):
                try:
                    bytes.fromhex(getattr(self, name))
                except ValueError:
                    raise ValueError(f"{name} {getattr(self, name)!r} is not hex") from None


@dataclass(frozen=True)
class CommittedUpdate(_HexFields):
    update_hash: str  # hex
    cid: str
    salt: str  # hex

    def payload(self) -> bytes:
        return update_payload(bytes.fromhex(self.update_hash), self.cid)


@dataclass(frozen=True)
class CommittedScores(_HexFields):
    valid_mask: int
    copy_mask: int
    scores: list[int]
    salt: str  # hex

    def ballot(self) -> ScoreBallot:
        return ScoreBallot(self.valid_mask, self.copy_mask, tuple(self.scores))

    def payload(self) -> bytes:
        return self.ballot().payload()


@dataclass(frozen=True)
class CommittedAttestation(_HexFields):
    aggregate_hash: str  # hex
    aggregate_cid: str
    approve: bool
    salt: str  # hex

    def attestation(self) -> Attestation:
        return Attestation(bytes.fromhex(self.aggregate_hash), self.aggregate_cid, self.approve)

    def payload(self) -> bytes:
        return self.attestation().payload()


Committed = CommittedUpdate | CommittedScores | CommittedAttestation
_KINDS: dict[str, type] = {
    "update": CommittedUpdate,
    "scores": CommittedScores,
    "attestation": CommittedAttestation,
}


class AgentState:
    """A small JSON file per (contract, task, edge): what it committed to, by round and stage."""

    def __init__(self, path: Path, contract: str, task_id: int, edge: str) -> None:
        self.path = Path(path)
        self.contract, self.task_id, self.edge = contract, task_id, edge
        self._rounds: dict[int, dict[str, Committed]] = self._load()

    def get(self, round_: int, kind: str) -> Committed | None:
        """What was committed in `round_` as `kind` ("update", "scores", "attestation")."""
        return self._rounds.get(round_, {}).get(kind)

    def save(self, round_: int, record: Committed) -> None:
        kind = next(k for k, cls in _KINDS.items() if isinstance(record, cls))
        entries = self._rounds.setdefault(round_, {})
        previous = entries.get(kind)
        entries[kind] = record
        try:
            self._write()
        except StateFileError:
            # Not on disk, so not remembered: nothing may be committed to a salt a crash loses.
            if previous is None:
                del entries[kind]
            else:
                entries[kind] = previous
            raise

    def save_blob(self, round_: int, data: bytes) -> None:
        """Keeps round `round_`'s update bytes until they are published (fsync'd, atomic)."""
        _write_atomically(self._blob_path(round_), data)

    def blob(self, round_: int) -> bytes | None:
        path = self._blob_path(round_)
        try:
            return path.read_bytes() if path.exists() else None
        except OSError as exc:
            raise StateFileError(f"cannot read {path}: {_reason(exc)}") from None

    def _blob_path(self, round_: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.round-{round_}.update")

    def _load(self) -> dict[int, dict[str, Committed]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise StateFileError(f"cannot read agent state {self.path}: {_reason(exc)}") from None
        if not isinstance(data, dict):
            raise StateFileError(f"agent state {self.path} is not a JSON object; move it away")
        # Task ids restart at 1 in every deployment: another contract's salts must not be reused.
        owner = {key: data.get(key) for key in self._owner()}
        if owner != self._owner():
            raise StateFileError(
                f"{self.path} belongs to contract {owner['contract']} task {owner['task_id']} "
                f"edge {owner['edge']}, not contract {self.contract} task {self.task_id} edge "
                f"{self.edge}; move it away to start afresh"
            )
        try:
            return self._decode_rounds(data.get("rounds"))
        except Undecodable as exc:
            raise StateFileError(f"{exc}; move it away to start afresh") from None

    def _decode_rounds(self, rounds: Any) -> dict[int, dict[str, Committed]]:
        """Every record, type-checked now: a damaged entry must stop the agent before it acts,
        not at the reveal that needs it."""
        if not isinstance(rounds, dict):
            raise Undecodable(f"agent state {self.path} has no rounds object")
        decoded: dict[int, dict[str, Committed]] = {}
        for key, entries in rounds.items():
            where = f"agent state {self.path} round {key!r}"
            if not key.isdigit():
                raise Undecodable(f"{where}: not a round number")
            if not isinstance(entries, dict):
                raise Undecodable(f"agent state {self.path} round {key}: expected an object")
            decoded[int(key)] = {}
            for kind, entry in entries.items():
                if kind not in _KINDS:
                    raise Undecodable(f"{where}: {kind!r} is not one of {', '.join(_KINDS)}")
                decoded[int(key)][kind] = decode(_KINDS[kind], entry, f"{where}.{kind}")
        return decoded

    def _owner(self) -> dict:
        return {"contract": self.contract, "task_id": self.task_id, "edge": self.edge}

    def _write(self) -> None:
        rounds = {
            str(round_): {kind: encode(record) for kind, record in entries.items()}
            for round_, entries in self._rounds.items()
        }
        data = {**self._owner(), "rounds": rounds}
        _write_atomically(self.path, json.dumps(data, indent=1).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    """Write, fsync and rename into place, or raise StateFileError and leave nothing behind."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise StateFileError(f"cannot write agent state {path}: {_reason(exc)}") from None


def _reason(exc: OSError | ValueError) -> str:
    """`No space left on device` rather than the errno and file name repeated."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
