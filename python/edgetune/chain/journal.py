"""The journal of signed transactions not yet confirmed, per (chain id, sender).

An entry is written before its transaction is broadcast and removed once a receipt for it (or for
its replacement) is seen, so whatever is in the journal may be in a node's pool. With a directory
it is kept on disk, one JSON file per (chain id, sender), so a second CLI invocation finds what
the first left pending; without one it lives in memory, for one process. On disk every
read-modify-write holds an exclusive lock on the directory (flock), so two processes signing
with the same key never drop each other's entries.
"""

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgetune.chain.errors import JournalUnreadable, JournalUnwritable


@dataclass
class SentTransaction:
    """A signed transaction as sent: enough to look it up, resend it byte for byte, re-sign it
    with a higher fee (same nonce), and replay it as a call to decode a revert."""

    sender: str
    nonce: int
    to: str | None  # None for a contract creation
    data: str  # 0x-hex calldata
    value: int
    gas: int
    max_fee: int
    tip: int
    raw: str  # 0x-hex of the latest signed version (the one to resend)
    hashes: list[str] = field(default_factory=list)  # every signed version, oldest first

    @property
    def tx_hash(self) -> str:
        return self.hashes[-1]

    def does(self, to: str | None, data: str, value: int) -> bool:
        """Whether this transaction carries the same intent (target, calldata, value)."""
        same_to = (self.to or "").lower() == (to or "").lower()
        return same_to and self.data.lower() == data.lower() and self.value == value

    def unsigned(self, chain_id: int) -> dict[str, Any]:
        """The fields to sign (EIP-1559)."""
        tx: dict[str, Any] = {
            "chainId": chain_id,
            "nonce": self.nonce,
            "data": self.data,
            "value": self.value,
            "gas": self.gas,
            "maxFeePerGas": self.max_fee,
            "maxPriorityFeePerGas": self.tip,
        }
        if self.to is not None:
            tx["to"] = self.to
        return tx


class Journal:
    """Unconfirmed transactions of every sender on one chain."""

    def __init__(self, chain_id: int, directory: Path | None = None) -> None:
        self.chain_id = chain_id
        self.directory = directory
        self._memory: dict[str, list[SentTransaction]] = {}
        self._lock = threading.Lock()

    def pending(self, sender: str) -> list[SentTransaction]:
        """The sender's unconfirmed transactions, lowest nonce first."""
        with self._locked(sender):
            return sorted(self._load(sender), key=lambda sent: sent.nonce)

    def record(self, sent: SentTransaction) -> None:
        """Add or update (after a replacement) the entry for `sent`'s nonce."""
        with self._locked(sent.sender):
            entries = [e for e in self._load(sent.sender) if e.nonce != sent.nonce]
            self._store(sent.sender, [*entries, sent])

    def settle(self, sender: str, nonce: int) -> None:
        """Forget the entry for `nonce` (its transaction, or one with its nonce, got mined)."""
        with self._locked(sender):
            entries = self._load(sender)
            kept = [e for e in entries if e.nonce != nonce]
            if len(kept) != len(entries):
                self._store(sender, kept)

    @contextlib.contextmanager
    def _locked(self, sender: str) -> Iterator[None]:
        """This process's threads, and on disk other processes too, one at a time."""
        with self._lock:
            if self.directory is None:
                yield
                return
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.directory, os.O_RDONLY)
            except OSError as exc:
                raise JournalUnwritable(_cannot(self._path(sender), "lock", exc)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _path(self, sender: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{self.chain_id}-{sender.lower()}.json"

    def _load(self, sender: str) -> list[SentTransaction]:
        path = self._path(sender)
        if path is None:
            return list(self._memory.get(sender.lower(), []))
        if not path.exists():
            return []
        try:
            document = json.loads(path.read_bytes().decode())
            return [SentTransaction(**entry) for entry in document["pending"]]
        except OSError as exc:
            raise JournalUnreadable(_cannot(path, "read", exc)) from None
        except (ValueError, TypeError, KeyError) as exc:  # not JSON, not UTF-8, wrong shape
            raise JournalUnreadable(
                f"transaction journal {path} is corrupt ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'wrong shape'}); move it away "
                "once no transaction of this sender can still be pending"
            ) from None

    def _store(self, sender: str, entries: list[SentTransaction]) -> None:
        path = self._path(sender)
        if path is None:
            self._memory[sender.lower()] = entries
            return
        document = {"chain_id": self.chain_id, "sender": sender, "pending": []}
        document["pending"] = [asdict(entry) for entry in entries]
        scratch = path.with_suffix(f".{os.getpid()}.tmp")  # a crash never leaves half a file
        try:
            if not entries:
                path.unlink(missing_ok=True)
                return
            scratch.write_text(json.dumps(document, indent=1))
            os.replace(scratch, path)
        except OSError as exc:
            raise JournalUnwritable(_cannot(path, "write", exc)) from None
        finally:
            scratch.unlink(missing_ok=True)  # written and renamed, or failed (a full disk)


def _cannot(path: Path | None, what: str, exc: OSError) -> str:
    """Names the journal file, not the scratch file or folder the OS error may name."""
    return f"cannot {what} transaction journal {path}: {exc.strerror or exc}"
