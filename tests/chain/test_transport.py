"""The transaction pipeline against a real anvil behind the fault-injection proxy: a dropped
transaction is resent and mined once, a receipt held past the wait is reported pending and then
awaited (never duplicated, in-process or across invocations through the journal), an outage
shorter than the retry budget is ridden out, a longer one is one line of ChainUnavailable."""

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from eth_utils import keccak
from hexbytes import HexBytes
from web3.contract import Contract

from edgetune.chain.compiler import compile_contracts
from edgetune.chain.connect import Chain, call, connect, send
from edgetune.chain.errors import (
    ChainUnavailable,
    TransactionDropped,
    TransactionPending,
    TransactionRefused,
)
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.transport import RetryPolicy

from ..faults.rpc_proxy import RpcProxy
from ..ports import free_port

pytestmark = pytest.mark.anvil

FAST_WAIT = 1.0  # seconds of receipt wait where a test wants TransactionPending
QUICK = RetryPolicy(budget_s=1.0)  # for the test that outlasts the budget on purpose


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    state = tmp_path_factory.mktemp("anvil") / "state.json"
    with AnvilNode(port=free_port(), state_file=state) as node:
        yield node


@pytest.fixture(scope="module")
def counter_address(anvil: AnvilNode, project: Path) -> tuple[str, list]:
    chain = connect("anvil", url=anvil.url)
    artifact = compile_contracts(project)["Counter"]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    return send(chain, factory.constructor(), chain.accounts[0])["contractAddress"], artifact.abi


@pytest.fixture
def proxy(anvil: AnvilNode) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as proxy:
        yield proxy


def counter_on(chain: Chain, deployed: tuple[str, list]) -> Contract:
    address, abi = deployed
    chain.errors.register(abi)
    return chain.w3.eth.contract(address=address, abi=abi)


def nonce_of(anvil: AnvilNode, address: str) -> int:
    direct = connect("anvil", url=anvil.url)
    return direct.w3.eth.get_transaction_count(address, "pending")


def test_dropped_transaction_is_resent_and_mined_once(anvil, counter_address, proxy) -> None:
    chain = connect("anvil", url=proxy.url)
    counter = counter_on(chain, counter_address)
    sender = chain.accounts[1]
    value, nonce = counter.functions.value().call(), nonce_of(anvil, sender.address)
    proxy.drop_transactions(1)
    receipt = send(chain, counter.functions.inc(1), sender)
    assert receipt["status"] == 1
    assert proxy.requests.count("eth_sendRawTransaction") == 2  # the drop, then the resend
    assert nonce_of(anvil, sender.address) == nonce + 1
    assert counter.functions.value().call() == value + 1


def test_receipt_held_past_the_wait_is_pending_then_awaited_not_duplicated(
    anvil, counter_address, proxy
) -> None:
    chain = connect("anvil", url=proxy.url)
    counter = counter_on(chain, counter_address)
    sender = chain.accounts[2]
    value, nonce = counter.functions.value().call(), nonce_of(anvil, sender.address)
    proxy.hold_receipts(600)
    with pytest.raises(TransactionPending) as caught:
        send(chain, counter.functions.inc(1), sender, timeout=FAST_WAIT)
    pending = caught.value
    assert pending.nonce == nonce and pending.tx_hash in str(pending)
    assert "\n" not in str(pending)
    proxy.hold_receipts(0)
    # the same intent again (a retried command): the first transaction's receipt, no second one
    receipt = send(chain, counter.functions.inc(1), sender)
    assert receipt["transactionHash"].to_0x_hex() == pending.tx_hash
    assert nonce_of(anvil, sender.address) == nonce + 1
    assert counter.functions.value().call() == value + 1
    # and a different intent afterwards is sent as usual
    send(chain, counter.functions.inc(2), sender)
    assert counter.functions.value().call() == value + 3


def test_journal_carries_a_pending_transaction_to_the_next_invocation_which_replaces_it(
    anvil, counter_address, tmp_path
) -> None:
    journal = tmp_path / "transactions"
    first = connect("anvil", url=anvil.url, journal=journal)
    counter = counter_on(first, counter_address)
    sender = first.accounts[3]
    value, nonce = counter.functions.value().call(), nonce_of(anvil, sender.address)
    first._rpc("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionPending) as caught:
            send(first, counter.functions.inc(1), sender, timeout=FAST_WAIT)
        on_disk = first.transport.journal.directory  # this chain's folder in the journal
        (entry,) = json.loads(next(on_disk.iterdir()).read_text())["pending"]
        assert entry["hashes"] == [caught.value.tx_hash]

        second = connect("anvil", url=anvil.url, journal=journal)  # a new CLI invocation
        (replacement,) = second.transport.replace_pending(sender)
        assert replacement != caught.value.tx_hash
        # the retried command sends the same intent; meanwhile a block is mined
        result: list = []
        retry = threading.Thread(
            target=lambda: result.append(send(second, counter_on(second, counter_address)
                                              .functions.inc(1), sender)),
        )  # fmt: skip
        retry.start()
        second.mine()
        retry.join(timeout=120)
    finally:
        first._rpc("evm_setAutomine", [True])
    assert result and result[0]["transactionHash"].to_0x_hex() == replacement
    assert nonce_of(anvil, sender.address) == nonce + 1
    assert counter.functions.value().call() == value + 1
    assert list(on_disk.iterdir()) == []  # settled


def test_refused_connections_for_seconds_are_ridden_out(anvil, counter_address, proxy) -> None:
    chain = connect("anvil", url=proxy.url)  # default budget, 30 s per read or broadcast
    counter = counter_on(chain, counter_address)
    sender = chain.accounts[4]
    value = call(chain, counter.functions.value())
    proxy.refuse(5)
    assert call(chain, counter.functions.value()) == value  # a read
    proxy.refuse(5)
    assert send(chain, counter.functions.inc(1), sender)["status"] == 1  # a send
    assert call(chain, counter.functions.value()) == value + 1


def test_refused_longer_than_the_budget_is_one_line_chain_unavailable(
    counter_address, proxy
) -> None:
    chain = connect("anvil", url=proxy.url, retry=QUICK)
    counter = counter_on(chain, counter_address)
    proxy.refuse(600)
    with pytest.raises(ChainUnavailable) as caught:
        call(chain, counter.functions.value())
    message = str(caught.value)
    assert proxy.url in message and "retried for 1 s" in message and "\n" not in message
    with pytest.raises(ChainUnavailable):
        send(chain, counter.functions.inc(1), chain.accounts[5])


def test_lost_answer_to_a_broadcast_resends_the_same_bytes_and_waits_for_that_hash(
    anvil, counter_address, proxy, monkeypatch
) -> None:
    chain = connect("anvil", url=proxy.url)
    counter = counter_on(chain, counter_address)
    sender = chain.accounts[6]
    value, nonce = counter.functions.value().call(), nonce_of(anvil, sender.address)
    real = chain.w3.eth.send_raw_transaction
    raws: list = []

    def delivered_but_answer_lost(raw):  # the node got it; the reply never came back
        raws.append(raw)
        tx_hash = real(raw)
        if len(raws) == 1:
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return tx_hash

    monkeypatch.setattr(chain.w3.eth, "send_raw_transaction", delivered_but_answer_lost)
    receipt = send(chain, counter.functions.inc(1), sender)
    assert len(raws) == 2 and raws[0] == raws[1]  # the very same bytes, not a second signature
    assert receipt["transactionHash"] == keccak(HexBytes(raws[0]))
    assert nonce_of(anvil, sender.address) == nonce + 1
    assert counter.functions.value().call() == value + 1


def test_a_nonce_gap_after_the_node_lost_a_mined_transaction_is_dropped_not_awaited(
    anvil, counter_address
) -> None:
    """A node restarted from an older state forgets a transaction already mined: the sender's
    cached nonce is then one ahead, and a transaction signed with it can never be mined. It must
    be dropped at once (so the caller re-reads the chain and sends again), not awaited until a
    receipt timeout."""
    chain = connect("anvil", url=anvil.url)
    counter = counter_on(chain, counter_address)
    sender = chain.accounts[5]
    snapshot = chain._rpc("evm_snapshot", [])
    send(chain, counter.functions.inc(1), sender)  # mined, then lost
    chain._rpc("evm_revert", [snapshot])
    nonce, value = nonce_of(anvil, sender.address), counter.functions.value().call()
    with pytest.raises(TransactionDropped) as caught:
        send(chain, counter.functions.inc(1), sender, timeout=60)
    assert caught.value.expected_nonce == nonce and "\n" not in str(caught.value)
    assert chain.transport.journal.pending(sender.address) == []
    # The gap and the dropped transaction's nonce hold no-ops: the dropped one never runs.
    assert nonce_of(anvil, sender.address) == caught.value.nonce + 1
    assert counter.functions.value().call() == value
    send(chain, counter.functions.inc(1), sender)  # sent again at the chain's own nonce
    assert counter.functions.value().call() == value + 1


def test_an_answer_cut_short_is_retried_like_any_transient_fault(
    anvil, counter_address, proxy
) -> None:
    # requests raises ChunkedEncodingError ("Connection broken: IncompleteRead"), not a
    # ConnectionError: it must be retried like one, not end the command.
    chain = connect("anvil", url=proxy.url)
    counter = counter_on(chain, counter_address)
    value, calls = counter.functions.value().call(), proxy.requests.count("eth_call")
    proxy.cut_answers(1)
    assert call(chain, counter.functions.value()) == value
    assert proxy.requests.count("eth_call") == calls + 2  # the cut answer, then the retry


def test_a_node_error_at_estimation_that_is_no_revert_is_one_line_and_sends_nothing(
    anvil,
) -> None:
    chain = connect("anvil", url=anvil.url)
    sender = chain.accounts[7]
    nonce = nonce_of(anvil, sender.address)
    endless = "0x5b600056"  # init code JUMPDEST PUSH1 0 JUMP: no gas limit is enough
    with pytest.raises(TransactionRefused) as caught:
        chain.transport.send(sender, None, endless)
    message = str(caught.value)
    assert anvil.url in message and "gas" in message and "\n" not in message
    assert "{" not in message  # the node's message, not web3's dict
    assert nonce_of(anvil, sender.address) == nonce


def test_gap_fillers_are_journaled_awaited_within_the_wait_and_known_as_ours_later(
    anvil, counter_address, tmp_path
) -> None:
    """The node forgets a pending transaction and the sender's nonce moves back (a restart
    from older state): the rerun fills the gap with no-ops. With mining stopped it must give up
    at its timeout (TransactionPending), not poll forever; the no-ops are journaled, so the run
    after mining resumes finds its own no-ops on those nonces (no NonceTaken) and sends."""
    journal = tmp_path / "transactions"
    first = connect("anvil", url=anvil.url, journal=journal)
    counter = counter_on(first, counter_address)
    sender = first.accounts[8]
    send(first, counter.functions.inc(1), sender)  # nonce >= 1, so it can move back one
    value, nonce = counter.functions.value().call(), nonce_of(anvil, sender.address)
    first._rpc("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionPending):
            send(first, counter.functions.inc(1), sender, timeout=FAST_WAIT)
        first._rpc("anvil_dropAllTransactions", [])
        first._rpc("anvil_setNonce", [sender.address, hex(nonce - 1)])

        second = connect("anvil", url=anvil.url, journal=journal)
        outcome: list = []

        def rerun() -> None:
            try:
                send(second, counter_on(second, counter_address).functions.inc(1), sender,
                     timeout=5)  # fmt: skip
            except Exception as exc:  # the test asserts which one
                outcome.append(exc)

        worker = threading.Thread(target=rerun, daemon=True)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "the rerun never gave up waiting"
        assert len(outcome) == 1 and isinstance(outcome[0], TransactionPending), outcome
        journaled = second.transport.journal.pending(sender.address)
        assert [e.nonce for e in journaled] == [nonce - 1, nonce]
        assert all(e.data == "0x" and e.to == sender.address for e in journaled)
    finally:
        first._rpc("evm_setAutomine", [True])
    first.mine()  # the no-ops in the pool
    third = connect("anvil", url=anvil.url, journal=journal)
    send(third, counter_on(third, counter_address).functions.inc(1), sender)
    assert counter.functions.value().call() == value + 1  # the dropped one never ran
    assert third.transport.journal.pending(sender.address) == []


@pytest.mark.parametrize(
    ("suggestion", "tip"),
    [({"result": hex(1_000)}, 1_000), ({"error": "the method does not exist"}, 10**9)],
    ids=["an OP-stack node's tip", "a node without the method"],
)
def test_the_tip_is_the_nodes_suggestion_or_the_dev_chains_without_one(
    anvil, counter_address, proxy, suggestion: dict, tip: int
) -> None:
    """A fixed 1 gwei tip overpays an OP-stack L2 (whose going tip is about 1,000 wei) by a
    million times; the node's eth_maxPriorityFeePerGas is used instead, where it has one."""
    proxy.answer("eth_maxPriorityFeePerGas", suggestion.get("result"), suggestion.get("error"))
    chain = connect("anvil", url=proxy.url)
    receipt = send(chain, counter_on(chain, counter_address).functions.inc(1), chain.accounts[9])
    sent = connect("anvil", url=anvil.url).w3.eth.get_transaction(receipt["transactionHash"])
    base_fee = connect("anvil", url=anvil.url).w3.eth.get_block(receipt["blockNumber"] - 1)
    assert receipt["status"] == 1 and "eth_maxPriorityFeePerGas" in proxy.requests
    assert sent["maxPriorityFeePerGas"] == tip
    assert sent["maxFeePerGas"] == 2 * base_fee["baseFeePerGas"] + tip
