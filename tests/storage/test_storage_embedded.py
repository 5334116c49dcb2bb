"""Embedded blockstore: round trips, block verification, and where it lives."""

import os
import random
from pathlib import Path

import pytest

from edgetune.storage import (
    BlockCorrupted,
    ContentNotFound,
    EmbeddedStore,
    open_store,
    parse_cid,
    to_base32,
)
from edgetune.storage.unixfs import CHUNK_SIZE, import_bytes

K = CHUNK_SIZE


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "blocks")


@pytest.mark.parametrize("size", [0, 1, K - 1, K, K + 1, 3 * K + 17])
def test_round_trip(store: EmbeddedStore, size: int) -> None:
    data = os.urandom(size)
    assert store.get(store.put(data)) == data


def test_round_trip_random_sizes(store: EmbeddedStore) -> None:
    rng = random.Random(7)
    for size in (rng.randrange(1, 4 * K) for _ in range(5)):
        data = rng.randbytes(size)
        assert store.get(store.put(data)) == data


def test_get_accepts_any_cid_spelling(store: EmbeddedStore) -> None:
    cid = store.put(b"hello")
    assert store.get("zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo") == b"hello"
    assert cid == to_base32("zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo")


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("which", ["leaf", "root"])
def test_corrupted_block_is_detected(store: EmbeddedStore, which: str) -> None:
    data = os.urandom(2 * K + 5)
    cid = store.put(data)
    _, blocks = import_bytes(data)
    target = blocks[1].cid if which == "leaf" else parse_cid(cid)
    _corrupt(store.block_path(target))
    with pytest.raises(BlockCorrupted, match="is corrupted: expected sha256") as caught:
        store.get(cid)
    assert parse_cid(caught.value.cid) == target


def test_put_repairs_a_corrupted_block(store: EmbeddedStore) -> None:
    data = os.urandom(K + 1)
    cid = store.put(data)
    _corrupt(store.block_path(import_bytes(data)[1][0].cid))
    store.put(data)
    assert store.get(cid) == data


def test_missing_block_is_reported(store: EmbeddedStore) -> None:
    data = os.urandom(K + 1)
    cid = store.put(data)
    store.block_path(import_bytes(data)[1][1].cid).unlink()
    with pytest.raises(ContentNotFound, match="not in embedded store"):
        store.get(cid)


def test_default_path_is_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("embedded")
    assert isinstance(store, EmbeddedStore)
    assert store.path == tmp_path / ".edgetune" / "ipfs"
    cid = store.put(b"x")
    assert (tmp_path / ".edgetune" / "ipfs" / "blocks" / cid[-2:] / cid).read_bytes() == b"x"


def test_no_temporary_files_left_behind(store: EmbeddedStore) -> None:
    store.put(os.urandom(3 * K))
    assert not [p for p in store.path.rglob(".tmp-*")]
