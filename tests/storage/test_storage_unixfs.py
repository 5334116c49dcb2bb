"""The embedded importer must give the CIDs a real node gives (`ipfs add --cid-version=1
--raw-leaves`); the expected CIDs below were produced by js-ipfs 0.66.1 via scripts/ipfs-node."""

import hashlib

import pytest

from edgetune.storage import InvalidCid, parse_cid, same_cid, to_base32
from edgetune.storage.cids import format_cid
from edgetune.storage.unixfs import CHUNK_SIZE, MAX_LINKS, _decode_file_node, import_bytes

K = CHUNK_SIZE


def pattern(size: int) -> bytes:
    """Deterministic bytes the node vectors were computed on."""
    return hashlib.shake_256(b"edgetune").digest(size)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (b"hello", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"),
        (pattern(1), "bafkreigtxmgvty2u5kcd46iiaeydurxiqaqztfwgqug52tefva7arra5si"),
        (pattern(K), "bafkreickyy6ttuh4cbo72nssqgd234dpoohfv24ra3chhjg7xa7tblt7ki"),
        (pattern(K + 1), "bafybeicaeug2khxtbhlk7h7ruumqomrxftwvtkluufdt7qnz7skssmyi34"),
        (pattern(MAX_LINKS * K + 1), "bafybeiaquly7d5uaxpzzcdvmeyjollrgscdegfuw5ylhfpidvj5x6znam4"),
    ],
    ids=["empty", "hello", "1B", "256KiB", "256KiB+1", "175-leaves"],
)
def test_cid_matches_node(data: bytes, expected: str) -> None:
    root, _ = import_bytes(data)
    assert format_cid(root) == expected


def test_single_chunk_is_one_raw_block_named_by_its_sha256() -> None:
    data = pattern(K)
    root, blocks = import_bytes(data)
    assert [b.data for b in blocks] == [data]
    assert root == bytes([1, 0x55, 0x12, 32]) + hashlib.sha256(data).digest()


def test_tree_is_balanced_with_at_most_174_links() -> None:
    """175 leaves need two levels: a full node of 174 leaves and a node holding the last one."""
    root, blocks = import_bytes(pattern(MAX_LINKS * K + 1))
    by_cid = {b.cid: b.data for b in blocks}
    _, children = _decode_file_node(root, by_cid[root])
    assert len(children) == 2
    sizes = [len(_decode_file_node(c, by_cid[c])[1]) for c in children]
    assert sizes == [MAX_LINKS, 1]
    assert len(blocks) == MAX_LINKS + 1 + 3


def test_cids_compare_decoded_across_spellings() -> None:
    base32 = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    base58 = "zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo"  # js-ipfs's default spelling
    assert same_cid(base32, base58)
    assert to_base32(base58) == base32
    assert not same_cid(base32, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")


def test_cidv0_parses_as_its_dag_pb_v1() -> None:
    v0 = "QmRN6wdp1S2A5EtjW9A3M1vKSBuQQGcgvuhoMUoEz4iiT5"
    assert parse_cid(v0)[:2] == bytes([1, 0x70])


@pytest.mark.parametrize("text", ["", "notacid", "bafy"])
def test_invalid_cid_is_refused(text: str) -> None:
    with pytest.raises(InvalidCid, match="not a CID"):
        parse_cid(text)
