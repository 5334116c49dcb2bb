"""The fault-injection proxy forwards single and batch JSON-RPC to a real anvil and injects each
fault it offers: refused connections, dropped raw transactions, receipts held back."""

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount

from edgetune.chain.connect import dev_accounts
from edgetune.chain.nodes import AnvilNode

from ..ports import free_port
from .rpc_proxy import RpcProxy

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    state = tmp_path_factory.mktemp("anvil") / "state.json"
    with AnvilNode(port=free_port(), state_file=state) as node:
        yield node


@pytest.fixture
def proxy(anvil: AnvilNode) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as proxy:
        yield proxy


def rpc(url: str, payload: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def one(url: str, method: str, *params: object) -> object:
    reply = rpc(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert isinstance(reply, dict) and "result" in reply, reply
    return reply["result"]


def signed_transfer(url: str, sender: LocalAccount) -> str:
    nonce = int(str(one(url, "eth_getTransactionCount", sender.address, "pending")), 16)
    tx = {"to": sender.address, "value": 1, "gas": 21_000, "nonce": nonce, "chainId": 31337}
    tx |= {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
    return "0x" + sender.sign_transaction(tx).raw_transaction.hex()


def test_forwards_single_and_batch_requests_and_records_methods(proxy: RpcProxy) -> None:
    assert one(proxy.url, "eth_chainId") == hex(31337)
    batch = [
        {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 8, "method": "eth_blockNumber", "params": []},
    ]
    replies = rpc(proxy.url, batch)
    assert isinstance(replies, list)
    assert sorted(r["id"] for r in replies) == [7, 8]
    assert proxy.requests == ["eth_chainId", "eth_chainId", "eth_blockNumber"]


def test_refuse_closes_the_port_then_reopens_it(proxy: RpcProxy) -> None:
    start = time.monotonic()
    proxy.refuse(1.0)
    with pytest.raises(OSError):  # ConnectionRefusedError inside urllib's URLError
        one(proxy.url, "eth_chainId")
    deadline = start + 60
    while True:
        try:
            assert one(proxy.url, "eth_chainId") == hex(31337)
            break
        except OSError:
            assert time.monotonic() < deadline, "the proxy never reopened"
            time.sleep(0.05)
    assert time.monotonic() - start >= 1.0


def test_dropped_transaction_gets_its_hash_but_never_reaches_the_node(
    proxy: RpcProxy, anvil: AnvilNode
) -> None:
    sender = dev_accounts(3)[2]
    raw = signed_transfer(anvil.url, sender)
    proxy.drop_transactions(1)
    tx_hash = one(proxy.url, "eth_sendRawTransaction", raw)
    assert one(anvil.url, "eth_getTransactionByHash", tx_hash) is None
    # the next one goes through, with the same hash the node computes
    assert one(proxy.url, "eth_sendRawTransaction", raw) == tx_hash
    assert one(anvil.url, "eth_getTransactionByHash", tx_hash) is not None


def test_held_receipts_read_null_until_the_hold_ends(proxy: RpcProxy, anvil: AnvilNode) -> None:
    raw = signed_transfer(anvil.url, dev_accounts(2)[1])
    tx_hash = one(anvil.url, "eth_sendRawTransaction", raw)
    deadline = time.monotonic() + 60
    while one(anvil.url, "eth_getTransactionReceipt", tx_hash) is None:  # automined, soon
        assert time.monotonic() < deadline, "anvil never mined the transfer"
        time.sleep(0.02)
    proxy.hold_receipts(600)
    assert one(proxy.url, "eth_getTransactionReceipt", tx_hash) is None
    proxy.hold_receipts(0)
    assert one(proxy.url, "eth_getTransactionReceipt", tx_hash) is not None
