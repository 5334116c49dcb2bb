"""Connect to a chain and send locally signed transactions.

`connect("embedded")` runs py-evm in-process (Cancun, like the compiled bytecode);
`connect("anvil")`/`connect("hardhat")` talk to a local node with its well-known dev accounts
(the public "test test ... junk" mnemonic, derived here, never stored); any other http(s) URL
signs with a key from EDGETUNE_PRIVATE_KEY or a keystore file.

`send`, `call` and `transfer` go through the chain's transaction pipeline
(`edgetune.chain.transport`): reads and broadcasts retried through RPC outages, nonces tracked
locally, fees cached, lost transactions resent byte for byte, and a transaction still pending
after the wait journaled instead of duplicated. `connect` itself tries once: a URL that has never
answered is a setting to fix, not an outage to wait out.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from edgetune.chain.errors import (
    ChainError,
    ChainUnavailable,
    InvalidPrivateKey,
    KeyNotConfigured,
)
from edgetune.chain.journal import Journal
from edgetune.chain.revert_data import ErrorDecoder as ErrorDecoder  # re-exported
from edgetune.chain.transport import RetryPolicy, Transport, one_line, transient_reason

T = TypeVar("T")
DEV_MNEMONIC = "test test test test test test test test test test test junk"  # anvil & Hardhat
DEV_ACCOUNTS = 10
DEFAULT_RPC_URL = "http://127.0.0.1:8545"
KEY_ENV = "EDGETUNE_PRIVATE_KEY"
KEYSTORE_PASSWORD_ENV = "EDGETUNE_KEYSTORE_PASSWORD"
_RPC_TIMEOUT_S = 10.0  # one HTTP request; the retry budget spans many


@dataclass
class Chain:
    """A connected chain: web3, its id, accounts that can sign, and dev-chain helpers.

    `journal` is the directory for the journal of unconfirmed transactions (None: in memory);
    `retry` bounds how long one read or broadcast rides out an outage."""

    w3: Web3
    chain_id: int
    accounts: list[LocalAccount]
    url: str
    errors: ErrorDecoder = field(default_factory=ErrorDecoder)
    journal: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transport: Transport = field(init=False, repr=False)

    def __post_init__(self) -> None:
        journal = Journal(self.chain_id, self.journal)
        self.transport = Transport(
            self.w3, self.chain_id, self.url, self.errors, journal, self.retry
        )

    def read(self, action: Callable[[], T]) -> T:
        """`action()` (any web3 read), retried through transient RPC faults."""
        return self.transport.read(action)

    def mine(self, blocks: int = 1) -> None:
        """Advance the block number (deadlines in blocks) on embedded, anvil or Hardhat chains."""
        if self.url == "embedded":
            self.w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]
            return
        client = str(self.read(lambda: self.w3.client_version)).lower()
        if client.startswith("anvil"):
            self._rpc("anvil_mine", [hex(blocks)])
        elif client.startswith("hardhat"):
            self._rpc("hardhat_mine", [hex(blocks)])
        else:
            for _ in range(blocks):
                self._rpc("evm_mine", [])

    def forget_nonces(self) -> None:
        """Re-read nonces and fees from the node next time (after a snapshot revert, say)."""
        self.transport.forget_nonces()

    def block_number(self) -> int:
        """The latest block number."""
        return int(self.read(lambda: self.w3.eth.block_number))

    def _rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.read(lambda: self.w3.provider.make_request(method, params))  # type: ignore[arg-type]
        if "error" in reply:
            raise ChainError(f"{method} failed on {self.url}: {reply['error']}")
        return reply.get("result")


def connect(
    chain: str,
    *,
    key: str | None = None,
    keystore: Path | None = None,
    url: str | None = None,
    journal: Path | None = None,
    retry: RetryPolicy | None = None,
) -> Chain:
    """Connect to `embedded`, `anvil`, `hardhat` (at `url`, default 127.0.0.1:8545) or any
    http(s) JSON-RPC URL; `key`/`keystore` override the signing account. `journal` keeps
    unconfirmed transactions on disk in that directory (remote chains only: the embedded chain
    ends with its process); `retry` overrides the default 30 s budget per read or broadcast."""
    policy = retry or RetryPolicy()
    if chain == "embedded":
        return _embedded(policy)
    if chain in ("anvil", "hardhat"):
        rpc_url = url or DEFAULT_RPC_URL
        accounts = [_account(key, keystore)] if key or keystore else dev_accounts()
        return _remote(rpc_url, accounts, journal, policy)
    if chain.startswith(("http://", "https://")):
        return _remote(chain, [_account(key, keystore, from_env=True)], journal, policy)
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
    gas estimation (nothing is sent) or on chain (status 0); TransactionPending when no receipt
    came within `timeout` (the transaction stays journaled, and the sender's next send awaits
    it); ChainUnavailable when the node stayed unreachable through a whole retry budget."""
    # Placeholders only so web3 encodes without asking the node; the pipeline fills them in.
    fields = {"from": sender.address, "value": value, "chainId": chain.chain_id, "nonce": 0}
    fields |= {"gas": 1, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}
    built = call.build_transaction(fields)
    # A constructor's arrives as bytes with `to` b"": the journal stores hex and None.
    data, to = HexBytes(built["data"]).to_0x_hex(), built.get("to") or None
    return chain.transport.send(sender, to, data, value, gas=gas, timeout=timeout)


def transfer(chain: Chain, sender: LocalAccount, to: str, value: int) -> TxReceipt:
    """Send plain ether (funding an edge's key, say), keeping the local nonce in step."""
    return chain.transport.send(sender, to, "0x", value, gas=21_000)


def call(chain: Chain, fn: Any, sender: str | None = None) -> Any:
    """Run a read-only contract call; a revert raises TransactionReverted with the decoded error."""
    return chain.transport.call(fn, sender)


def _embedded(retry: RetryPolicy) -> Chain:
    from eth.vm.forks import CancunVM
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend(vm_configuration=((0, CancunVM),))  # the bytecode targets cancun
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    accounts = [Account.from_key(key.to_bytes()) for key in backend.account_keys]
    chain_id = int(w3.eth.chain_id)
    return Chain(w3=w3, chain_id=chain_id, accounts=accounts, url="embedded", retry=retry)


def _remote(
    url: str, accounts: list[LocalAccount], journal: Path | None, retry: RetryPolicy
) -> Chain:
    provider = Web3.HTTPProvider(
        url,
        request_kwargs={"timeout": _RPC_TIMEOUT_S},
        cache_allowed_requests=True,
        # only what never changes: web3 would also cache transactions by hash, and trip over
        # a pending one (no block number yet) with a logged traceback
        cacheable_requests={"eth_chainId", "web3_clientVersion", "net_version"},
        exception_retry_configuration=None,  # the transport retries, within its own budget
    )
    w3 = Web3(provider)
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as exc:  # requests, OSError, JSON: any failure means nobody answers
        raise ChainUnavailable(url, transient_reason(exc) or one_line(exc)) from None
    if journal is not None:
        # Per chain instance, not per chain id: a fresh dev chain reuses the id and the dev
        # accounts, and must never be sent (or wait for) another chain's pending transactions.
        genesis = w3.eth.get_block(0)["hash"].to_0x_hex()
        journal = journal / f"genesis-{genesis[2:18]}"
    return Chain(w3, chain_id, accounts, url, journal=journal, retry=retry)


def _account(key: str | None, keystore: Path | None, from_env: bool = False) -> LocalAccount:
    source = "the signing key"
    if key is None and keystore is None and from_env:
        key, source = os.environ.get(KEY_ENV), f"${KEY_ENV}"
    if key:
        try:
            return Account.from_key(key)
        except ValueError:  # binascii.Error too; eth-keys' own reason can be wrong (0x00...)
            raise InvalidPrivateKey(
                f"{source} is not a private key: it must be 32 bytes of hex (64 digits), "
                "nonzero and below the secp256k1 order"
            ) from None
    if keystore is None:
        raise KeyNotConfigured(f"no signing key: set {KEY_ENV} or pass a keystore file")
    password = os.environ.get(KEYSTORE_PASSWORD_ENV)
    if password is None:
        raise KeyNotConfigured(f"keystore {keystore} needs its password in {KEYSTORE_PASSWORD_ENV}")
    try:
        secret = Account.decrypt(json.loads(Path(keystore).read_text()), password)
    except (OSError, ValueError) as exc:
        raise KeyNotConfigured(f"cannot open keystore {keystore}: {one_line(exc)}") from None
    return Account.from_key(secret)
