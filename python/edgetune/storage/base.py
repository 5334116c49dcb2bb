"""The interface every backend offers, and the one safe way to read content for the protocol.

A CID alone is not trusted: the same bytes get different CIDs under another CID version or
chunker, and a backend may be misconfigured or lying. The chain stores sha256(bytes); only
`fetch_verified` hands bytes to the caller, and only after that hash matches.
"""

import hashlib
from typing import Protocol, runtime_checkable

from edgetune.storage.cids import format_cid
from edgetune.storage.errors import ContentHashMismatch, StorageError
from edgetune.storage.unixfs import import_bytes


@runtime_checkable
class ContentStore(Protocol):
    """Content-addressed byte storage (embedded blockstore or an IPFS node)."""

    def put(self, data: bytes) -> str:
        """Store `data`; return its base32 CIDv1 (UnixFS, raw leaves, 256 KiB chunks)."""
        ...

    def get(self, cid: str) -> bytes:
        """Return the bytes named by `cid` (any CID spelling)."""
        ...


def content_cid(data: bytes) -> str:
    """The CID `put` will return for `data`, computed without storing it: an edge commits to its
    update's CID before anyone may see the bytes (they are published only at reveal)."""
    root, _ = import_bytes(data)
    return format_cid(root)


def fetch_verified(store: ContentStore, cid: str, expected_sha256: str | bytes) -> bytes:
    """Fetch `cid` and return its bytes only if sha256(bytes) equals `expected_sha256`.

    `expected_sha256` is 32 raw bytes or 64 hex digits (an optional `0x` prefix, as web3 prints
    a bytes32, is accepted).
    """
    expected = _digest_bytes(expected_sha256)
    data = store.get(cid)
    actual = hashlib.sha256(data).digest()
    if actual != expected:
        raise ContentHashMismatch(cid, expected.hex(), actual.hex())
    return data


def _digest_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        text = value.removeprefix("0x")
        try:
            value = bytes.fromhex(text)
        except ValueError as error:
            raise StorageError(f"expected sha256 is not hex: {text!r}") from error
    if len(value) != 32:
        raise StorageError(f"expected sha256 must be 32 bytes, got {len(value)}")
    return value
