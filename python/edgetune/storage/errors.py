"""Errors of the storage subpackage. Each message is one line naming the cause, so an agent loop
can log it and move on (e.g. mark an update invalid) without a traceback."""

from edgetune.errors import EdgetuneError


class StorageError(EdgetuneError):
    """Root of every storage failure."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached (IPFS daemon down, wrong address)."""


class ContentNotFound(StorageError):
    """The store holds no block for a CID that the content needs."""


class BlockCorrupted(StorageError):
    """A stored block's bytes no longer hash to the digest its CID names."""

    def __init__(self, cid: str, expected: str, actual: str) -> None:
        super().__init__(f"block {cid} is corrupted: expected sha256 {expected}, got {actual}")
        self.cid, self.expected, self.actual = cid, expected, actual


class ContentHashMismatch(StorageError):
    """Fetched bytes do not hash to the sha256 the caller (the chain) expects."""

    def __init__(self, cid: str, expected: str, actual: str) -> None:
        super().__init__(f"content {cid} has sha256 {actual}, expected {expected}")
        self.cid, self.expected, self.actual = cid, expected, actual


class InvalidCid(StorageError):
    """A string is not a CID this package can read."""


class UnsupportedContent(StorageError):
    """The DAG under a CID is valid IPLD but not a plain UnixFS file (e.g. a directory)."""
