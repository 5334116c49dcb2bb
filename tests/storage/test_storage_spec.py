"""open_store specs, and a clear one-line error when the IPFS node is not there."""

from pathlib import Path

import pytest

from edgetune.storage import (
    EmbeddedStore,
    InvalidCid,
    IpfsStore,
    StorageError,
    StorageUnavailable,
    StoreSpec,
    open_store,
    parse_store_spec,
)

from ..ports import free_port


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("embedded", StoreSpec("embedded", ".edgetune/ipfs")),
        ("embedded:/data/blocks", StoreSpec("embedded", "/data/blocks")),
        ("ipfs", StoreSpec("ipfs", "/ip4/127.0.0.1/tcp/5001")),
        ("ipfs:/ip4/127.0.0.1/tcp/5001", StoreSpec("ipfs", "/ip4/127.0.0.1/tcp/5001")),
        ("ipfs:/ip4/127.0.0.1/tcp/5001/http", StoreSpec("ipfs", "/ip4/127.0.0.1/tcp/5001")),
        ("http://127.0.0.1:5001", StoreSpec("ipfs", "/ip4/127.0.0.1/tcp/5001")),
        ("ipfs:http://localhost:5002/", StoreSpec("ipfs", "/dns/localhost/tcp/5002")),
    ],
)
def test_parse_store_spec(spec: str, parsed: StoreSpec) -> None:
    assert parse_store_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["s3:bucket", "ipfs:localhost:5001", "https://127.0.0.1:5001", ""])
def test_unknown_spec_names_itself(spec: str) -> None:
    with pytest.raises(StorageError, match=r"store spec|IPFS API address"):
        parse_store_spec(spec)


def test_open_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(f"embedded:{tmp_path}"), EmbeddedStore)
    node = open_store("http://127.0.0.1:5001")
    assert isinstance(node, IpfsStore) and node.address == "/ip4/127.0.0.1/tcp/5001"


@pytest.mark.parametrize("operation", ["put", "get"])
def test_unreachable_node_is_one_clear_line(operation: str) -> None:
    address = f"/ip4/127.0.0.1/tcp/{free_port()}"
    store = IpfsStore(address, timeout=5)
    with pytest.raises(StorageUnavailable) as caught:
        if operation == "put":
            store.put(b"x")
        else:
            store.get("bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq")
    assert (
        str(caught.value) == f"IPFS node at {address} unreachable: [Errno 111] Connection refused"
    )


def test_ipfs_get_refuses_a_non_cid_before_calling_the_node() -> None:
    store = IpfsStore(f"/ip4/127.0.0.1/tcp/{free_port()}")
    with pytest.raises(InvalidCid, match="not a CID"):
        store.get("notacid")
