"""Content-addressed storage for adapters and models: an embedded UnixFS blockstore or an IPFS
node, both yielding the CIDs `ipfs add --cid-version=1 --raw-leaves` gives. Read protocol bytes
only through `fetch_verified`, which checks them against the on-chain sha256."""

from edgetune.storage.base import ContentStore, content_cid, fetch_verified
from edgetune.storage.cids import parse_cid, same_cid, to_base32
from edgetune.storage.embedded import EmbeddedStore
from edgetune.storage.errors import (
    BlockCorrupted,
    ContentHashMismatch,
    ContentNotFound,
    InvalidCid,
    StorageError,
    StorageUnavailable,
    UnsupportedContent,
)
from edgetune.storage.ipfs import IpfsStore
from edgetune.storage.spec import StoreSpec, open_store, parse_store_spec

__all__ = [
    "BlockCorrupted",
    "ContentHashMismatch",
    "ContentNotFound",
    "ContentStore",
    "EmbeddedStore",
    "InvalidCid",
    "IpfsStore",
    "StorageError",
    "StorageUnavailable",
    "StoreSpec",
    "UnsupportedContent",
    "content_cid",
    "fetch_verified",
    "open_store",
    "parse_cid",
    "parse_store_spec",
    "same_cid",
    "to_base32",
]
