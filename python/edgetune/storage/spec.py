"""Choosing a backend from one string, so the CLI and configs name a store the same way.

embedded                    blockstore under ./.edgetune/ipfs
embedded:PATH               blockstore under PATH
ipfs                        IPFS node at /ip4/127.0.0.1/tcp/5001
ipfs:/ip4/H/tcp/P           IPFS node at that multiaddr
ipfs:http://H:P, http://H:P IPFS node at that URL
"""

from dataclasses import dataclass
from typing import Literal

from edgetune.storage.base import ContentStore
from edgetune.storage.embedded import DEFAULT_EMBEDDED_PATH, EmbeddedStore
from edgetune.storage.errors import StorageError
from edgetune.storage.ipfs import DEFAULT_API, IpfsStore, api_multiaddr


@dataclass(frozen=True)
class StoreSpec:
    """A parsed store spec: which backend, and where (a directory or an API multiaddr)."""

    kind: Literal["embedded", "ipfs"]
    location: str


def parse_store_spec(spec: str) -> StoreSpec:
    """Parse `embedded[:PATH]`, `ipfs[:ADDR]` or `http://H:P`; names the bad spec on failure."""
    kind, _, rest = spec.strip().partition(":")
    if kind == "embedded":
        return StoreSpec("embedded", rest or str(DEFAULT_EMBEDDED_PATH))
    if kind == "ipfs":
        return StoreSpec("ipfs", api_multiaddr(rest or DEFAULT_API))
    if kind == "http":
        return StoreSpec("ipfs", api_multiaddr(spec.strip()))
    raise StorageError(
        f"unknown store spec {spec!r}: want embedded[:PATH], ipfs:/ip4/H/tcp/P or http://H:P"
    )


def open_store(spec: str) -> ContentStore:
    """Open the backend a spec names; an IPFS node is only contacted on first use."""
    parsed = parse_store_spec(spec)
    if parsed.kind == "embedded":
        return EmbeddedStore(parsed.location)
    return IpfsStore(parsed.location)
