"""ContentStore over a running IPFS node's RPC API (Kubo, or js-ipfs from scripts/ipfs-node).

The client is constructed directly: `ipfshttpclient.connect()` checks the daemon version and
refuses every current Kubo. Content is added as CIDv1 with raw leaves and pinned, so the node
returns the same CID the embedded store computes, and the node keeps it through garbage
collection.
"""

import re
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import ipfshttpclient
from ipfshttpclient import exceptions as ipfs_errors

from edgetune.storage.cids import parse_cid, to_base32
from edgetune.storage.errors import ContentNotFound, StorageError, StorageUnavailable

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
_ADD_OPTIONS = {"cid-version": 1, "raw-leaves": True, "pin": True, "cid-base": "base32"}
_P = ParamSpec("_P")
_T = TypeVar("_T")
_URL = re.compile(r"^http://(?P<host>[^:/]+):(?P<port>\d+)/?$")


class IpfsStore:
    """ContentStore backed by an IPFS daemon's /api/v0 HTTP endpoint."""

    def __init__(self, address: str = DEFAULT_API, timeout: float = 120.0) -> None:
        self.address = api_multiaddr(address)
        self.timeout = timeout
        self._client = ipfshttpclient.Client(self.address + "/http", timeout=timeout)

    def put(self, data: bytes) -> str:
        """Add and pin `data`; return the node's CID re-spelled as base32 CIDv1."""
        # add_bytes sends the file part with a Content-Type header, which js-ipfs needs.
        return to_base32(self._call(self._client.add_bytes, data, opts=_ADD_OPTIONS))

    def get(self, cid: str) -> bytes:
        """`cat` the file. Kubo does not rehash blocks it reads from its own disk by default, so
        protocol code reads through `fetch_verified`, which checks the whole file's sha256."""
        parse_cid(cid)  # a clear InvalidCid here rather than a node error later
        return self._call(self._client.cat, cid.strip())

    def close(self) -> None:
        """Release the HTTP session."""
        self._client.close()

    def _call(self, method: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a client call, turning the client's exceptions into one-line storage errors."""
        try:
            with warnings.catch_warnings():
                # ipfshttpclient passes urllib3 a `strict` argument urllib3 2 warns about.
                warnings.filterwarnings("ignore", "The 'strict' parameter", FutureWarning)
                return method(*args, **kwargs)
        except ipfs_errors.ConnectionError as error:
            raise StorageUnavailable(
                f"IPFS node at {self.address} unreachable: {_short_reason(error)}"
            ) from error
        except ipfs_errors.TimeoutError as error:
            # An offline js-ipfs waits forever for a block it lacks instead of answering.
            raise StorageUnavailable(
                f"IPFS node at {self.address} gave no answer in {self.timeout:g} s"
                " (content it does not hold, or an overloaded node)"
            ) from error
        except ipfs_errors.ErrorResponse as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            if "not found" in message.lower():
                raise ContentNotFound(f"IPFS node at {self.address}: {message}") from error
            raise StorageError(f"IPFS node at {self.address} refused: {message}") from error


def api_multiaddr(address: str) -> str:
    """`/ip4/H/tcp/P` for a multiaddr (with or without `/http`) or an `http://H:P` URL.

    Plain HTTP only: a local node's RPC API is not served over TLS."""
    match = _URL.match(address)
    if match:
        host, port = match["host"], match["port"]
        kind = "ip4" if re.fullmatch(r"[\d.]+", host) else "dns"
        return f"/{kind}/{host}/tcp/{port}"
    if not address.startswith("/"):
        raise StorageError(
            f"not an IPFS API address: {address!r} (want /ip4/H/tcp/P or http://H:P)"
        )
    return address.removesuffix("/").removesuffix("/http")


def _short_reason(error: Exception) -> str:
    """The OS-level cause (e.g. `[Errno 111] Connection refused`) out of urllib3's long chain."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] [^\"')]+", text)
    return found.group(0).strip() if found else text.splitlines()[0][:200]
