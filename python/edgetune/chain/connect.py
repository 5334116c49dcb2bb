"""Connect to a chain and send locally signed transactions.

`connect("embedded")` runs py-evm in-process (Cancun, like the compiled bytecode);
`connect("anvil")`/`connect("hardhat")` talk to a local node with its well-known dev accounts
(the public "test test ... junk" mnemonic, derived here, never stored); any other http(s) URL
signs with a key from EDGETUNE_PRIVATE_KEY or a keystore file.

`send` fills chainId, nonce, fees and gas itself (nonce tracked locally, fees cached), so one
transaction costs about three RPC calls instead of web3's ten: estimate, send, receipt.
"""

import ast
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_abi_to_4byte_selector
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import TxReceipt

from edgetune.chain.errors import (
    ChainError,
    ChainUnavailable,
    KeyNotConfigured,
    TransactionReverted,
)

DEV_MNEMONIC = "test test test test test test test test test test test junk"  # anvil & Hardhat
DEV_ACCOUNTS = 10
DEFAULT_RPC_URL = "http://127.0.0.1:8545"
KEY_ENV = "EDGETUNE_PRIVATE_KEY"
KEYSTORE_PASSWORD_ENV = "EDGETUNE_KEYSTORE_PASSWORD"
_FEE_TTL_S = 10.0
_GAS_MARGIN = 1.2
# Added to every estimate: a transaction estimated before another one in the same block may find
# itself the stage's last actor, and then it also closes the stage (RoundClock.close rewrites up
# to three clock slots, about 15,000 gas; twice that plus slack covers a cold first write).
_GAS_HEADROOM = 40_000
_BYTES_REPR = re.compile(r"b'.*'|b\".*\"", re.DOTALL)  # repr of bytes in a message
_REVERTS = (ContractLogicError, TransactionFailed)
_BUILTIN_ERRORS: dict[bytes, tuple[str, list[str], list[str]]] = {
    bytes.fromhex("08c379a0"): ("Error", ["message"], ["string"]),
    bytes.fromhex("4e487b71"): ("Panic", ["code"], ["uint256"]),
}


class ErrorDecoder:
    """Maps 4-byte custom-error selectors to names and decodes their arguments.

    The contract client registers its ABI's error entries, so a revert reads
    `EdgeTuneWrongPhase(current=2, expected=3)` rather than raw bytes."""

    def __init__(self) -> None:
        self._errors = dict(_BUILTIN_ERRORS)

    def register(self, abi: list[dict[str, Any]]) -> None:
        """Learn every `type: error` entry of a contract ABI."""
        for entry in abi:
            if entry.get("type") == "error":
                names = [arg["name"] for arg in entry["inputs"]]
                types = [_abi_type(arg) for arg in entry["inputs"]]
                self._errors[function_abi_to_4byte_selector(entry)] = (entry["name"], names, types)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any] | None]:
        """(name, {arg: value}); values are None when the data names no known error."""
        if len(data) < 4:
            return ("revert without data", None)
        known = self._errors.get(data[:4])
        if known is None:
            return (f"unknown error 0x{data[:4].hex()}", None)
        name, names, types = known
        try:
            values = abi_decode(types, data[4:])
        except Exception:  # malformed payload: keep the name, drop the arguments
            return (name, {})
        values = [
            Web3.to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, values, strict=False)
        ]
        return (name, dict(zip(names, values, strict=True)))


@dataclass
class Chain:
    """A connected chain: web3, its id, accounts that can sign, and dev-chain helpers."""

    w3: Web3
    chain_id: int
    accounts: list[LocalAccount]
    url: str
    errors: ErrorDecoder = field(default_factory=ErrorDecoder)
    _nonces: dict[str, int] = field(default_factory=dict, repr=False)
    _fees: tuple[float, dict[str, int]] | None = field(default=None, repr=False)

    def mine(self, blocks: int = 1) -> None:
        """Advance the block number (deadlines in blocks) on embedded, anvil or Hardhat chains."""
        if self.url == "embedded":
            self.w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]
            return
        client = str(self.w3.client_version).lower()
        if client.startswith("anvil"):
            self._rpc("anvil_mine", [hex(blocks)])
        elif client.startswith("hardhat"):
            self._rpc("hardhat_mine", [hex(blocks)])
        else:
            for _ in range(blocks):
                self._rpc("evm_mine", [])

    def forget_nonces(self) -> None:
        """Re-read nonces and fees from the node next time (after a snapshot revert, say)."""
        self._nonces.clear()
        self._fees = None

    def block_number(self) -> int:
        """The latest block number."""
        return int(self.w3.eth.block_number)

    def _rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise ChainError(f"{method} failed on {self.url}: {reply['error']}")
        return reply.get("result")


def connect(
    chain: str,
    *,
    key: str | None = None,
    keystore: Path | None = None,
    url: str | None = None,
) -> Chain:
    """Connect to `embedded`, `anvil`, `hardhat` (at `url`, default 127.0.0.1:8545) or any
    http(s) JSON-RPC URL; `key`/`keystore` override the signing account."""
    if chain == "embedded":
        return _embedded()
    if chain in ("anvil", "hardhat"):
        rpc_url = url or DEFAULT_RPC_URL
        accounts = [_account(key, keystore)] if key or keystore else dev_accounts()
        return _remote(rpc_url, accounts)
    if chain.startswith(("http://", "https://")):
        return _remote(chain, [_account(key, keystore, from_env=True)])
    raise ChainError(f"unknown chain {chain!r}: use embedded, anvil, hardhat or an http(s) URL")


def dev_accounts(count: int = DEV_ACCOUNTS) -> list[LocalAccount]:
    """The prefunded accounts of anvil and Hardhat, derived from their public dev mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    ]


def send(
    chain: Chain,
    call: Any,
    sender: LocalAccount,
    *,
    value: int = 0,
    gas: int | None = None,
    timeout: float = 120.0,
) -> TxReceipt:
    """Build, sign, send and wait for `call` (a bound contract function or constructor).

    Raises TransactionReverted with the decoded custom error when the call reverts, whether at
    gas estimation (nothing is sent) or on chain (status 0)."""
    for attempt in (1, 2):
        try:
            return _send_once(chain, call, sender, value, gas, timeout)
        except _Refused as exc:
            chain.forget_nonces()  # resync nonce and fees from the node
            if attempt == 2:
                raise ChainError(f"{chain.url} refused the transaction: {exc}") from None
    raise AssertionError("unreachable")


def transfer(chain: Chain, sender: LocalAccount, to: str, value: int) -> TxReceipt:
    """Send plain ether (funding an edge's key, say), keeping the local nonce in step."""
    tx = {"to": to, "value": value, "gas": 21_000, "chainId": chain.chain_id, **_fees(chain)}
    tx["nonce"] = chain._nonces.get(sender.address)
    if tx["nonce"] is None:
        tx["nonce"] = chain.w3.eth.get_transaction_count(sender.address, "pending")
    tx_hash = chain.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    chain._nonces[sender.address] = tx["nonce"] + 1
    return chain.w3.eth.wait_for_transaction_receipt(tx_hash)


def call(chain: Chain, fn: Any, sender: str | None = None) -> Any:
    """Run a read-only contract call; a revert raises TransactionReverted with the decoded error."""
    try:
        return fn.call({"from": sender} if sender else {})
    except _REVERTS as exc:
        raise _reverted(chain, None, _revert_data(exc)) from None


class _Refused(Exception):
    """The node rejected a signed transaction (stale nonce or fee): worth one retry."""


def _send_once(
    chain: Chain, call: Any, sender: LocalAccount, value: int, gas: int | None, timeout: float
) -> TxReceipt:
    tx: dict[str, Any] = {"from": sender.address, "value": value, "chainId": chain.chain_id}
    tx |= _fees(chain)
    tx["nonce"] = chain._nonces.get(sender.address)
    if tx["nonce"] is None:
        tx["nonce"] = chain.w3.eth.get_transaction_count(sender.address, "pending")
    tx["gas"] = gas or _estimate(chain, call, tx)
    built = call.build_transaction(tx)
    signed = sender.sign_transaction(built)
    try:
        tx_hash = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    except (Web3Exception, ValueError) as exc:
        raise _Refused(_one_line(exc)) from None
    chain._nonces[sender.address] = tx["nonce"] + 1
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout, poll_latency=0.02)
    if receipt["status"] != 1:
        _raise_mined_revert(chain, built, receipt)
    return receipt


def _embedded() -> Chain:
    from eth.vm.forks import CancunVM
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend(vm_configuration=((0, CancunVM),))  # the bytecode targets cancun
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    accounts = [Account.from_key(key.to_bytes()) for key in backend.account_keys]
    return Chain(w3=w3, chain_id=int(w3.eth.chain_id), accounts=accounts, url="embedded")


def _remote(url: str, accounts: list[LocalAccount]) -> Chain:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}, cache_allowed_requests=True))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as exc:  # requests, OSError, JSON: any failure means nobody answers
        raise ChainUnavailable(url, _one_line(exc)) from None
    return Chain(w3=w3, chain_id=chain_id, accounts=accounts, url=url)


def _account(key: str | None, keystore: Path | None, from_env: bool = False) -> LocalAccount:
    if key is None and keystore is None and from_env:
        key = os.environ.get(KEY_ENV)
    if key:
        return Account.from_key(key)
    if keystore is None:
        raise KeyNotConfigured(f"no signing key: set {KEY_ENV} or pass a keystore file")
    password = os.environ.get(KEYSTORE_PASSWORD_ENV)
    if password is None:
        raise KeyNotConfigured(f"keystore {keystore} needs its password in {KEYSTORE_PASSWORD_ENV}")
    try:
        secret = Account.decrypt(json.loads(Path(keystore).read_text()), password)
    except (OSError, ValueError) as exc:
        raise KeyNotConfigured(f"cannot open keystore {keystore}: {_one_line(exc)}") from None
    return Account.from_key(secret)


def _fees(chain: Chain) -> dict[str, int]:
    """EIP-1559 fees from the latest base fee, reused for a few seconds (dev chains' base fee
    only falls under light load; twice the base fee leaves room for it to rise)."""
    now = time.monotonic()
    if chain._fees is None or now - chain._fees[0] > _FEE_TTL_S:
        base = int(chain.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = 10**9
        chain._fees = (now, {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip})
    return chain._fees[1]


def _estimate(chain: Chain, call: Any, tx: dict[str, Any]) -> int:
    try:
        estimate = call.estimate_gas({"from": tx["from"], "value": tx["value"]})
        return int(estimate * _GAS_MARGIN) + _GAS_HEADROOM
    except _REVERTS as exc:
        raise _reverted(chain, None, _revert_data(exc)) from None


def _raise_mined_revert(chain: Chain, tx: dict[str, Any], receipt: TxReceipt) -> None:
    """Replay the reverted transaction as a call on the state its block left, to recover its data.

    Not on the block before: a transaction reverted by another one mined earlier in the same
    block (a race) succeeds there and would lose its reason."""
    replay = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
    data: Any = b""
    try:
        chain.w3.eth.call(replay, receipt["blockNumber"])  # type: ignore[arg-type]
    except _REVERTS as exc:
        data = _revert_data(exc)
    raise _reverted(chain, receipt["transactionHash"].to_0x_hex(), data)


def _reverted(chain: Chain, tx_hash: str | None, data: Any) -> TransactionReverted:
    raw = HexBytes(data) if isinstance(data, (str, bytes)) and data else b""
    name, values = chain.errors.decode(bytes(raw))
    return TransactionReverted(tx_hash, name, bytes(raw), values)


def _revert_data(exc: BaseException) -> Any:
    """Revert data from web3 (ContractLogicError.data) or from eth-tester, whose TransactionFailed
    carries the bytes, or on some paths only their repr inside the message."""
    if isinstance(exc, ContractLogicError):
        return exc.data
    seen: BaseException | None = exc
    while seen is not None:
        first = seen.args[0] if seen.args else None
        if isinstance(first, bytes):
            return first
        if isinstance(first, str) and (match := _BYTES_REPR.search(first)):
            return ast.literal_eval(match.group(0))
        seen = seen.__cause__ or seen.__context__
    return b""


def _checksummed(abi_type: str, value: Any) -> Any:
    return Web3.to_checksum_address(value) if abi_type == "address" else value


def _abi_type(arg: dict[str, Any]) -> str:
    """Canonical ABI type, expanding tuples (structs) as eth_abi expects."""
    kind = arg["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in arg["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
