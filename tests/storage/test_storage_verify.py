"""fetch_verified: bytes reach the caller only when their sha256 matches the expected hash."""

import hashlib
from pathlib import Path

import pytest

from edgetune.storage import ContentHashMismatch, EmbeddedStore, StorageError, fetch_verified


class LyingStore:
    """A backend that answers every CID with the same wrong bytes."""

    def put(self, data: bytes) -> str:
        return "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"

    def get(self, cid: str) -> bytes:
        return b"not what was stored"


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path)


@pytest.mark.parametrize("form", ["hex", "0xhex", "bytes"])
def test_matching_hash_returns_bytes(store: EmbeddedStore, form: str) -> None:
    data = b"adapter bytes"
    digest = hashlib.sha256(data).digest()
    expected = {"hex": digest.hex(), "0xhex": "0x" + digest.hex(), "bytes": digest}[form]
    assert fetch_verified(store, store.put(data), expected) == data


def test_mismatch_names_cid_expected_and_actual(store: EmbeddedStore) -> None:
    cid = store.put(b"real update")
    wrong = hashlib.sha256(b"claimed update").hexdigest()
    with pytest.raises(ContentHashMismatch) as caught:
        fetch_verified(store, cid, wrong)
    error = caught.value
    actual = hashlib.sha256(b"real update").hexdigest()
    assert (error.cid, error.expected, error.actual) == (cid, wrong, actual)
    assert cid in str(error) and wrong in str(error) and actual in str(error)
    assert "\n" not in str(error)


def test_lying_backend_is_caught() -> None:
    store = LyingStore()
    cid = store.put(b"honest")
    with pytest.raises(ContentHashMismatch):
        fetch_verified(store, cid, hashlib.sha256(b"honest").digest())


@pytest.mark.parametrize("bad", ["zz" * 32, "ab" * 31, b"\x00" * 31])
def test_malformed_expected_hash_is_refused(store: EmbeddedStore, bad: str | bytes) -> None:
    with pytest.raises(StorageError, match="sha256"):
        fetch_verified(store, store.put(b"x"), bad)
