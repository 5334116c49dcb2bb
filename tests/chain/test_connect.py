"""Connections and the send helper on the in-process chain (no node needed)."""

from pathlib import Path

import pytest
from eth_abi import encode
from web3.contract import Contract

from edgetune.chain.compiler import compile_contracts
from edgetune.chain.connect import Chain, ErrorDecoder, connect, send
from edgetune.chain.errors import (
    ChainError,
    ChainUnavailable,
    InvalidPrivateKey,
    TransactionReverted,
)

from ..ports import free_port


@pytest.fixture(scope="module")
def embedded() -> Chain:
    return connect("embedded")


@pytest.fixture
def counter(embedded: Chain, project: Path) -> Contract:
    artifact = compile_contracts(project)["Counter"]
    embedded.errors.register(artifact.abi)
    factory = embedded.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    address = send(embedded, factory.constructor(), embedded.accounts[0])["contractAddress"]
    return embedded.w3.eth.contract(address=address, abi=artifact.abi)


def test_embedded_has_funded_signing_accounts_and_mines(embedded: Chain) -> None:
    assert len(embedded.accounts) == 10
    assert embedded.w3.eth.get_balance(embedded.accounts[0].address) > 10**21
    before = embedded.block_number()
    embedded.mine(4)
    assert embedded.block_number() == before + 4


def test_send_tracks_nonces_across_senders(embedded: Chain, counter: Contract) -> None:
    for account in embedded.accounts[:3] * 2:
        assert send(embedded, counter.functions.inc(1), account)["status"] == 1
    assert counter.functions.value().call() == 6


def test_revert_at_estimation_names_the_custom_error(embedded: Chain, counter: Contract) -> None:
    nonce = embedded.w3.eth.get_transaction_count(embedded.accounts[0].address)
    with pytest.raises(TransactionReverted) as caught:
        send(embedded, counter.functions.inc(5000), embedded.accounts[0])
    assert caught.value.error == "CounterTooBig"
    assert caught.value.values == {"value": 5000, "limit": 1000}
    assert caught.value.tx_hash is None  # nothing was sent
    assert embedded.w3.eth.get_transaction_count(embedded.accounts[0].address) == nonce


def test_revert_on_chain_is_decoded_too(embedded: Chain, counter: Contract) -> None:
    with pytest.raises(TransactionReverted) as caught:
        send(embedded, counter.functions.inc(5000), embedded.accounts[0], gas=100_000)
    assert caught.value.tx_hash is not None
    assert "CounterTooBig(value=5000, limit=1000)" in str(caught.value)
    # the nonce was used on chain; the next send still goes through
    assert send(embedded, counter.functions.inc(1), embedded.accounts[0])["status"] == 1


def test_running_out_of_gas_is_named_so_not_blamed_on_a_race(
    embedded: Chain, counter: Contract
) -> None:
    with pytest.raises(TransactionReverted) as caught:
        send(embedded, counter.functions.inc(1), embedded.accounts[0], gas=30_000)
    assert caught.value.error == "OutOfGas" and caught.value.values == {"gas_limit": 30_000}
    assert caught.value.tx_hash is not None


def test_decoder_knows_builtin_errors_and_flags_unknown_ones() -> None:
    decoder = ErrorDecoder()
    message = bytes.fromhex("08c379a0") + encode(["string"], ["nope"])
    assert decoder.decode(message) == ("Error", {"message": "nope"})
    assert decoder.decode(bytes.fromhex("deadbeef")) == ("unknown error 0xdeadbeef", None)
    assert decoder.decode(b"") == ("revert without data", None)


def test_dead_chain_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainUnavailable) as caught:
        connect("anvil", url=url)
    assert url in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_chain_name_is_refused() -> None:
    with pytest.raises(ChainError, match="unknown chain 'mainnet'"):
        connect("mainnet")


@pytest.mark.parametrize("key", ["0x1234", "zz", "0x" + "00" * 32, "0x" + "ff" * 32])
def test_a_malformed_env_key_is_one_line_naming_the_variable_not_the_key(monkeypatch, key):
    monkeypatch.setenv("EDGETUNE_PRIVATE_KEY", key)
    # refused before any connection: the URL need not answer
    with pytest.raises(InvalidPrivateKey) as caught:
        connect(f"http://127.0.0.1:{free_port()}")
    message = str(caught.value)
    assert "$EDGETUNE_PRIVATE_KEY" in message and "\n" not in message
    assert key not in message  # a secret, even a broken one, is never printed
