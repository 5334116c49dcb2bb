"""A directory blockstore that needs no daemon: the default for single-machine runs.

Blocks are files named by their base32 CID, sharded by the CID's last two characters (as Kubo's
flatfs does) so no directory grows huge. The DAG layout matches `ipfs add --cid-version=1
--raw-leaves`, so `put` returns the CID a real node would, and the blocks could be imported into
one unchanged.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from edgetune.storage.cids import format_cid, parse_cid
from edgetune.storage.errors import BlockCorrupted, ContentNotFound
from edgetune.storage.unixfs import cid_digest, export_bytes, import_bytes

DEFAULT_EMBEDDED_PATH = Path(".edgetune") / "ipfs"


class EmbeddedStore:
    """ContentStore over a local directory of blocks."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_EMBEDDED_PATH) -> None:
        self.path = Path(path).resolve()
        self._blocks = self.path / "blocks"

    def put(self, data: bytes) -> str:
        """Chunk and store `data`; blocks are written atomically, so a crash leaves no torn file."""
        root, blocks = import_bytes(data)
        for block in blocks:
            self._write(block.cid, block.data)
        return format_cid(root)

    def get(self, cid: str) -> bytes:
        """Reassemble the file under `cid`, checking every block against its digest."""
        return export_bytes(parse_cid(cid), self._read_verified)

    def block_path(self, cid: bytes) -> Path:
        """Where the block with binary CID `cid` lives (tests use it to corrupt one)."""
        name = format_cid(cid)
        return self._blocks / name[-2:] / name

    def _write(self, cid: bytes, data: bytes) -> None:
        # Always rewrite: content addressing makes it idempotent, and it repairs a damaged block.
        target = self.block_path(cid)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read_verified(self, cid: bytes) -> bytes:
        _, digest = cid_digest(cid)
        try:
            data = self.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise ContentNotFound(
                f"block {format_cid(cid)} not in embedded store {self.path}"
            ) from None
        actual = hashlib.sha256(data).digest()
        if actual != digest:
            raise BlockCorrupted(format_cid(cid), digest.hex(), actual.hex())
        return data
