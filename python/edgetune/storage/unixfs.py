"""UnixFS file import and export, byte-compatible with `ipfs add --cid-version=1 --raw-leaves`.

Why hand-written: no maintained Python package builds UnixFS DAGs (py-ipfs-unixfs-style projects
are abandoned and predate CIDv1 raw leaves), and the encoding needed is small: two protobuf
messages (dag-pb PBNode/PBLink and UnixFS Data) with a handful of fields. The layout follows
Kubo and js-ipfs defaults: fixed 256 KiB chunks stored as raw blocks, a balanced tree with at most
174 links per node, sha2-256 everywhere. With the same layout, a file imported here keeps its CID
when it is later added to a real node, which is what lets edges switch backends freely.

Binary CIDs are built here directly (a fixed 4-byte prefix before the digest); parsing CID
*strings* of any base and version is left to py-cid (see `cids.py`).
"""

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edgetune.storage.errors import UnsupportedContent

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174

CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
_SHA2_256 = 0x12
_UNIXFS_RAW, _UNIXFS_FILE = 0, 2


@dataclass(frozen=True)
class Block:
    """One content-addressed block: its binary CIDv1 and the bytes it names."""

    cid: bytes
    data: bytes


@dataclass(frozen=True)
class _Child:
    """What a parent needs to link a subtree: its CID, file bytes below it, and total DAG size."""

    cid: bytes
    file_size: int
    tsize: int


def make_cid(codec: int, digest: bytes) -> bytes:
    """Binary CIDv1 for a sha2-256 digest (codec and multihash codes are one-byte varints)."""
    return bytes([1, codec, _SHA2_256, 32]) + digest


def cid_digest(cid: bytes) -> tuple[int, bytes]:
    """Split a binary CIDv1 built by `make_cid` into (codec, sha256 digest)."""
    if len(cid) != 36 or cid[0] != 1 or cid[2:4] != bytes([_SHA2_256, 32]):
        raise UnsupportedContent(f"CID {cid.hex()} is not a sha2-256 CIDv1")
    if cid[1] not in (CODEC_RAW, CODEC_DAG_PB):
        raise UnsupportedContent(f"CID codec 0x{cid[1]:x} is neither raw nor dag-pb")
    return cid[1], cid[4:]


def import_bytes(data: bytes) -> tuple[bytes, list[Block]]:
    """Chunk `data` into a balanced UnixFS DAG; returns (root CID, blocks in write order).

    The tree is built bottom-up in groups of MAX_LINKS, as js-ipfs does; Kubo's depth-first
    balanced builder yields the same shape (full subtrees left, one partial subtree right).
    """
    view = memoryview(data)
    if len(view) <= CHUNK_SIZE:  # one chunk (or none): the file is a single raw block
        leaf = Block(make_cid(CODEC_RAW, hashlib.sha256(view).digest()), bytes(view))
        return leaf.cid, [leaf]
    blocks: list[Block] = []
    level = [_leaf(view[i : i + CHUNK_SIZE], blocks) for i in range(0, len(view), CHUNK_SIZE)]
    while len(level) > 1:
        level = [_parent(level[i : i + MAX_LINKS], blocks) for i in range(0, len(level), MAX_LINKS)]
    return level[0].cid, blocks


def _leaf(chunk: memoryview, blocks: list[Block]) -> _Child:
    block = Block(make_cid(CODEC_RAW, hashlib.sha256(chunk).digest()), bytes(chunk))
    blocks.append(block)
    return _Child(block.cid, len(chunk), len(chunk))


def _parent(children: list[_Child], blocks: list[Block]) -> _Child:
    """A UnixFS File node: total size, then each child's size (`blocksizes`), then the links."""
    total = sum(c.file_size for c in children)
    unixfs = _key_varint(1, _UNIXFS_FILE) + _key_varint(3, total)
    unixfs += b"".join(_key_varint(4, c.file_size) for c in children)
    node = encode_pbnode([(c.cid, c.tsize) for c in children], unixfs)
    block = Block(make_cid(CODEC_DAG_PB, hashlib.sha256(node).digest()), node)
    blocks.append(block)
    return _Child(block.cid, total, len(node) + sum(c.tsize for c in children))


def encode_pbnode(links: list[tuple[bytes, int]], data: bytes) -> bytes:
    """dag-pb PBNode: links first, then Data (the canonical order, not field-number order).

    Each link carries an empty Name, as both Kubo and js-ipfs write for file chunks.
    """
    out = bytearray()
    for cid, tsize in links:
        link = _key_bytes(1, cid) + _key_bytes(2, b"") + _key_varint(3, tsize)
        out += _key_bytes(2, link)
    out += _key_bytes(1, data)
    return bytes(out)


def export_bytes(root: bytes, load: Callable[[bytes], bytes]) -> bytes:
    """Reassemble a UnixFS file from its root CID; `load(cid)` returns a block's verified bytes."""
    out = bytearray()
    stack = [root]
    while stack:
        cid = stack.pop()
        codec, _ = cid_digest(cid)
        block = load(cid)
        if codec == CODEC_RAW:
            out += block
            continue
        data, links = _decode_file_node(cid, block)
        out += data
        stack.extend(reversed(links))
    return bytes(out)


def _decode_file_node(cid: bytes, block: bytes) -> tuple[bytes, list[bytes]]:
    """(inline data, child CIDs) of a dag-pb UnixFS file node; anything else is refused."""
    links: list[bytes] = []
    unixfs = b""
    for field, value in _fields(block):
        if field == 2 and isinstance(value, bytes):
            links.extend(v for f, v in _fields(value) if f == 1 and isinstance(v, bytes))
        elif field == 1 and isinstance(value, bytes):
            unixfs = value
    kind, inline = _UNIXFS_FILE, b""
    for field, value in _fields(unixfs):
        if field == 1 and isinstance(value, int):
            kind = value
        elif field == 2 and isinstance(value, bytes):
            inline = value
    if kind not in (_UNIXFS_RAW, _UNIXFS_FILE):
        raise UnsupportedContent(f"block {cid.hex()} is UnixFS type {kind}, not a file")
    return inline, links


def _fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a protobuf message; varints as int, length-delimited as
    bytes. Fixed-width fields are skipped (none of the messages read here uses them)."""
    pos = 0
    while pos < len(message):
        key, pos = _read_varint(message, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(message, pos)
            yield field, value
        elif wire == 2:
            length, pos = _read_varint(message, pos)
            if pos + length > len(message):
                raise UnsupportedContent("truncated protobuf field in dag-pb block")
            yield field, message[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise UnsupportedContent(f"protobuf wire type {wire} in dag-pb block")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise UnsupportedContent("malformed varint in dag-pb block")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _key_bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value
