"""Against a real IPFS node: the embedded store's CIDs are the node's, and content moves
between the two backends unchanged."""

import hashlib
import os
import random

import pytest

from edgetune.storage import (
    ContentNotFound,
    EmbeddedStore,
    IpfsStore,
    StorageUnavailable,
    fetch_verified,
    same_cid,
)
from edgetune.storage.cids import format_cid
from edgetune.storage.unixfs import CHUNK_SIZE, CODEC_RAW, MAX_LINKS, make_cid

pytestmark = pytest.mark.ipfs

K = CHUNK_SIZE
_rng = random.Random(2026)
SIZES = [0, 1, K - 1, K, K + 1, MAX_LINKS * K, MAX_LINKS * K + 1]
RANDOM_SIZES = [_rng.randrange(2, 8 * K) for _ in range(3)] + [_rng.randrange(8 * K, 40 * K)]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedStore:
    return EmbeddedStore(tmp_path_factory.mktemp("embedded"))


@pytest.mark.parametrize("size", SIZES + RANDOM_SIZES)
def test_embedded_cid_equals_node_cid(
    ipfs_node: IpfsStore, embedded: EmbeddedStore, size: int
) -> None:
    data = os.urandom(size)
    node_cid = ipfs_node.put(data)
    assert same_cid(node_cid, embedded.put(data))
    assert node_cid.startswith("bafk" if size <= K else "bafy")


def test_content_moves_between_backends(ipfs_node: IpfsStore, embedded: EmbeddedStore) -> None:
    data = os.urandom(5 * K + 3)
    cid = embedded.put(data)
    ipfs_node.put(data)
    assert fetch_verified(ipfs_node, cid, hashlib.sha256(data).digest()) == data
    assert embedded.get(ipfs_node.put(data)) == data


def test_missing_content_is_a_clear_error(ipfs_node: IpfsStore) -> None:
    """Kubo offline answers "not found"; an offline js-ipfs waits forever for a block it lacks,
    so the store's timeout turns that into an error too."""
    absent = format_cid(make_cid(CODEC_RAW, hashlib.sha256(os.urandom(16)).digest()))
    impatient = IpfsStore(ipfs_node.address, timeout=2)
    try:
        with pytest.raises((StorageUnavailable, ContentNotFound), match=ipfs_node.address):
            impatient.get(absent)
    finally:
        impatient.close()
