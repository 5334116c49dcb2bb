"""The transaction pipeline: every read and every transaction of a Chain goes through here.

Reads (calls, estimates, logs, block numbers, receipts; any web3 read through `Chain.read`)
and broadcasts are retried on a transient fault (connection refused or reset, timeout, HTTP
5xx/429) with exponential backoff (0.1 s doubling to 2 s), for up to `RetryPolicy.budget_s`
(30 s by default, `connect(..., retry=RetryPolicy(budget_s=...))`) per read; after that
`ChainUnavailable` (one line) is raised and the caller may simply poll again later: nothing is
lost, and a transaction already broadcast stays journaled. A node's own error answer (a revert,
a refusal) is never retried here.

Sending one transaction:
1. Earlier unconfirmed transactions of the same sender (the journal, below) are settled first:
   each is awaited (resent if the node does not know it), and if one of them carries the same
   intent (target, calldata, value) its receipt is the answer: a retried command never signs a
   second transaction for what the first one already does.
2. Gas is estimated (a revert there raises `TransactionReverted`, nothing is sent), the
   transaction is signed with the locally tracked nonce and journaled, then broadcast. A broadcast
   that fails on the way is resent byte for byte (same nonce, same hash) within the budget. A
   node's refusal ("nonce too low", "already known") is checked against the node: if it knows the
   hash, the transaction got in; otherwise it was really refused, and it is re-signed once with
   the nonce and fees re-read from the node.
3. The receipt is awaited up to `timeout`; every second without one the node is asked whether it
   still knows the transaction, and it is resent if not (dropped on the way, or evicted). After
   the timeout `TransactionPending(tx_hash, nonce)` is raised and the entry stays journaled;
   `replace_pending` re-signs it with the same nonce and a 25% higher fee. A reverted receipt is
   replayed as a call on its own block's state, so a transaction beaten by another one in the
   same block (a race) names the custom error it hit; one that used all its gas reports OutOfGas.

The journal (`edgetune.chain.journal`) is in memory, or on disk when the Chain has a journal
directory (`.edgetune/transactions/<chain id>-<sender>.json`), which carries pending
transactions across CLI invocations.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception
from web3.types import RPCEndpoint, TxReceipt

from edgetune.chain.errors import (
    ChainUnavailable,
    NonceTaken,
    TransactionDropped,
    TransactionPending,
    TransactionRefused,
    TransactionReverted,
)
from edgetune.chain.journal import Journal, SentTransaction
from edgetune.chain.revert_data import ErrorDecoder, revert_data, revert_types

T = TypeVar("T")
_FEE_TTL_S = 10.0
# The tip when the node suggests none: what dev chains suggest. Real nodes are asked
# (eth_maxPriorityFeePerGas): on an OP-stack L2 the going tip is about a millionth of this.
_FALLBACK_TIP_WEI = 10**9
GAS_MARGIN = 1.2  # estimation error that grows with the call (1/64 withheld per nested call)
# Added to every estimate: a transaction estimated before another one in the same block may find
# itself the stage's last actor, and then it also closes the stage (RoundClock.close rewrites up
# to three clock slots), a fixed cost the estimate never saw. Measured on anvil by
# tests/chain/test_transport_block.py (four edges' transactions estimated before any is mined,
# landing in one block): the closing commit used 12,982 gas beyond its 86,145 estimate, the
# closing revealUpdate 12,213 beyond 72,857; the registers that fill a task, none. 40,000 covers
# three times the worst figure without counting on the 1.2x (which a small estimate lacks).
GAS_HEADROOM = 40_000
_REPLACEMENT_BUMP = 1.25  # nodes want >= 10% more on both fee fields to replace a transaction
_LIVENESS_CHECK_S = 1.0  # how often a missing receipt makes us ask whether the node has the tx
_ACCEPTED_HINTS = ("already known", "already imported", "known transaction", "nonce too low")


@dataclass(frozen=True)
class RetryPolicy:
    """How long one read or broadcast is retried through transient faults."""

    budget_s: float = 30.0
    first_backoff_s: float = 0.1
    max_backoff_s: float = 2.0


def gas_limit(estimate: int) -> int:
    """The gas sent for a transaction estimated at `estimate` (see GAS_HEADROOM)."""
    return int(estimate * GAS_MARGIN) + GAS_HEADROOM


class Transport:
    """Owns one chain's nonces, fee cache, journal and retry policy."""

    def __init__(
        self, w3: Web3, chain_id: int, url: str, errors: ErrorDecoder, journal: Journal,
        retry: RetryPolicy,
    ) -> None:  # fmt: skip
        self.w3, self.chain_id, self.url, self.errors = w3, chain_id, url, errors
        self.journal, self.retry = journal, retry
        self._nonces: dict[str, int] = {}
        self._fees: tuple[float, int, int] | None = None  # (read at, base fee, tip)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reads

    def read(self, action: Callable[[], T]) -> T:
        """`action()`, retried with backoff through transient faults for one retry budget."""
        deadline = time.monotonic() + self.retry.budget_s
        delay = self.retry.first_backoff_s
        while True:
            try:
                return action()
            except Exception as exc:
                reason = transient_reason(exc)
                if reason is None:
                    raise
                if time.monotonic() + delay > deadline:
                    budget = f"{self.retry.budget_s:g} s"
                    raise ChainUnavailable(self.url, f"{reason} (retried for {budget})") from None
                time.sleep(delay)
                delay = min(2 * delay, self.retry.max_backoff_s)

    def call(self, fn: Any, sender: str | None = None) -> Any:
        """A read-only contract call; a revert raises TransactionReverted with its error."""
        try:
            return self.read(lambda: fn.call({"from": sender} if sender else {}))
        except revert_types() as exc:
            raise self._reverted(None, revert_data(exc)) from None

    def forget_nonces(self) -> None:
        """Re-read nonces and fees from the node next time (after a snapshot revert, say)."""
        with self._lock:
            self._nonces.clear()
            self._fees = None

    # ------------------------------------------------------------------ sends

    def send(
        self,
        sender: LocalAccount,
        to: str | None,
        data: str,
        value: int = 0,
        *,
        gas: int | None = None,
        timeout: float = 120.0,
    ) -> TxReceipt:
        """Sign, send and await one transaction (see the module docstring for every step)."""
        for earlier in self.journal.pending(sender.address):
            receipt = self._await(earlier, sender, timeout)
            self.journal.settle(sender.address, earlier.nonce)
            self._forget_nonce(sender.address)
            if earlier.does(to, data, value):
                return self._checked(earlier, receipt)
        for attempt in (1, 2):
            sent = self._sign(sender, to, data, value, gas)
            self.journal.record(sent)
            refusal = self._broadcast(sent)
            if refusal is None:
                break
            self.journal.settle(sender.address, sent.nonce)
            self.forget_nonces()  # resync nonce and fees from the node
            if attempt == 2:
                raise TransactionRefused(f"{self.url} refused the transaction: {refusal}")
        receipt = self._await(sent, sender, timeout)
        self.journal.settle(sender.address, sent.nonce)
        return self._checked(sent, receipt)

    def replace_pending(self, sender: LocalAccount) -> list[str]:
        """Re-sign the sender's journaled transactions with the same nonces and 25% higher fees
        and broadcast them; their hashes. The next send (or `send` of the same intent) awaits
        whichever version gets mined."""
        replaced = []
        for sent in self.journal.pending(sender.address):
            sent.max_fee = max(math.ceil(sent.max_fee * _REPLACEMENT_BUMP), self._fee_quote()[0])
            sent.tip = math.ceil(sent.tip * _REPLACEMENT_BUMP)
            signed = sender.sign_transaction(sent.unsigned(self.chain_id))
            sent.raw = signed.raw_transaction.to_0x_hex()
            sent.hashes.append(signed.hash.to_0x_hex())
            self.journal.record(sent)
            self._broadcast(sent)  # refused: the old version got mined first, which _await finds
            replaced.append(sent.tx_hash)
        return replaced

    def _sign(
        self, sender: LocalAccount, to: str | None, data: str, value: int, gas: int | None
    ) -> SentTransaction:
        limit = gas or gas_limit(self._estimate(sender.address, to, data, value))
        max_fee, tip = self._fee_quote()
        with self._lock:  # one nonce per transaction, even from threads sharing the chain
            nonce = self._nonces.get(sender.address)
            if nonce is None:
                count = self.w3.eth.get_transaction_count
                nonce = self.read(lambda: count(sender.address, "pending"))
            self._nonces[sender.address] = nonce + 1
        sent = SentTransaction(sender.address, nonce, to, data, value, limit, max_fee, tip, raw="")
        signed = sender.sign_transaction(sent.unsigned(self.chain_id))
        sent.raw, sent.hashes = signed.raw_transaction.to_0x_hex(), [signed.hash.to_0x_hex()]
        return sent

    def _broadcast(self, sent: SentTransaction) -> str | None:
        """Send `sent.raw` (the same bytes on every retry): None once the node has it, else why
        it refused it."""
        try:
            self.read(lambda: self.w3.eth.send_raw_transaction(sent.raw))
            return None
        except (Web3Exception, ValueError) as exc:
            refusal = node_message(exc)
            if any(hint in refusal.lower() for hint in _ACCEPTED_HINTS) and self._known(sent):
                return None
            return refusal

    def _await(self, sent: SentTransaction, sender: LocalAccount, timeout: float) -> TxReceipt:
        """The receipt of `sent` (or of its replacement), resending it if the node lost it."""
        return self._await_until(sent, sender, time.monotonic() + timeout, timeout)

    def _await_until(
        self, sent: SentTransaction, sender: LocalAccount, deadline: float, timeout: float
    ) -> TxReceipt:
        checked = time.monotonic()
        # An automining node (anvil, the tests' chain) has the receipt within milliseconds:
        # a first pause of 20 ms was a quarter of each transaction's time there.
        pause = 0.002
        while (receipt := self._mined(sent)) is None:
            now = time.monotonic()
            if now >= deadline:
                raise TransactionPending(sent.tx_hash, sent.nonce, timeout)
            if now - checked >= _LIVENESS_CHECK_S:
                checked = now
                self._check_no_gap(sent, sender, deadline, timeout)
                if not self._known(sent):
                    self._resend_lost(sent)
            time.sleep(pause)
            pause = min(2 * pause, 0.25)
        return receipt

    def _check_no_gap(
        self, sent: SentTransaction, sender: LocalAccount, deadline: float, timeout: float
    ) -> None:
        """Raise TransactionDropped if `sent` waits behind a nonce nobody will ever send: the
        node's next nonce for the sender (counting its pool) is below `sent`'s, which happens
        when a node restarted from an older state lost a transaction already mined.

        `sent` signed against a state the chain no longer has, so it must never run: the gap is
        filled with no-op transfers to self and `sent` is replaced by one (same nonce, higher
        fee). They are journaled like any transaction (a later run awaits them, and knows the
        nonces they take are its own) and awaited within the caller's wait (TransactionPending
        after it), before the caller re-reads the chain and sends what is still needed."""
        count = self.w3.eth.get_transaction_count
        expected = self.read(lambda: count(sent.sender, "pending"))
        if expected >= sent.nonce:
            return
        # The replacement first: once the gap is filled, `sent` would run at once.
        fillers = [self._noop(sender, sent.nonce, replacing=sent)]
        fillers += [self._noop(sender, nonce) for nonce in range(expected, sent.nonce)]
        for filler in fillers:
            self.journal.record(filler)
            self._broadcast(filler)
        for filler in sorted(fillers, key=lambda f: f.nonce):
            self._await_until(filler, sender, deadline, timeout)
            self.journal.settle(sent.sender, filler.nonce)
        self._forget_nonce(sent.sender)
        raise TransactionDropped(sent.tx_hash, sent.nonce, expected)

    def _noop(
        self, sender: LocalAccount, nonce: int, replacing: SentTransaction | None = None
    ) -> SentTransaction:
        """A signed transfer of nothing to self at `nonce`; replacing a transaction, it pays
        more (nodes want that) and keeps the older hashes, so whichever is mined is found."""
        noop = SentTransaction(
            sender.address, nonce, sender.address, "0x", 0, 21_000, *self._fee_quote(),
            raw="", hashes=list(replacing.hashes) if replacing else [],
        )  # fmt: skip
        if replacing is not None:
            noop.max_fee = max(noop.max_fee, math.ceil(replacing.max_fee * _REPLACEMENT_BUMP))
            noop.tip = math.ceil(replacing.tip * _REPLACEMENT_BUMP)
        signed = sender.sign_transaction(noop.unsigned(self.chain_id))
        noop.raw = signed.raw_transaction.to_0x_hex()
        noop.hashes.append(signed.hash.to_0x_hex())
        return noop

    def _resend_lost(self, sent: SentTransaction) -> None:
        count = self.w3.eth.get_transaction_count
        if self.read(lambda: count(sent.sender, "latest")) > sent.nonce:
            if self._mined(sent) is None:  # mined between our two looks, or never will be
                self.journal.settle(sent.sender, sent.nonce)
                self._forget_nonce(sent.sender)  # someone else signs with this key: re-read
                raise NonceTaken(sent.tx_hash, sent.nonce, sent.sender)
            return
        self._broadcast(sent)

    def _mined(self, sent: SentTransaction) -> TxReceipt | None:
        for tx_hash in reversed(sent.hashes):
            try:
                return self.read(lambda h=tx_hash: self.w3.eth.get_transaction_receipt(h))
            except TransactionNotFound:
                continue
        return None

    def _known(self, sent: SentTransaction) -> bool:
        for tx_hash in sent.hashes:
            try:
                self.read(lambda h=tx_hash: self.w3.eth.get_transaction(h))
                return True
            except TransactionNotFound:
                continue
        return False

    def _forget_nonce(self, sender: str) -> None:
        with self._lock:
            self._nonces.pop(sender, None)

    # ------------------------------------------------------------------ gas and fees

    def _estimate(self, sender: str, to: str | None, data: str, value: int) -> int:
        tx: dict[str, Any] = {"from": sender, "data": data, "value": value}
        if to is not None:
            tx["to"] = to
        try:
            return int(self.read(lambda: self.w3.eth.estimate_gas(tx)))  # type: ignore[arg-type]
        except revert_types() as exc:
            raise self._reverted(None, revert_data(exc)) from None
        except (Web3Exception, ValueError) as exc:  # the node's own refusal: out of gas, funds
            target = f"to {to}" if to else "creating a contract"
            raise TransactionRefused(
                f"{self.url} cannot estimate gas for the transaction {target}: {node_message(exc)}"
            ) from None

    def _fee_quote(self) -> tuple[int, int]:
        """(max fee, tip): twice the latest base fee plus the node's suggested tip, both reused
        for a few seconds (dev chains' base fee only falls under light load; twice leaves room
        for it to rise)."""
        now = time.monotonic()
        fees = self._fees
        if fees is None or now - fees[0] > _FEE_TTL_S:
            block = self.read(lambda: self.w3.eth.get_block("latest"))
            fees = self._fees = (now, int(block.get("baseFeePerGas", 0)), self._suggested_tip())
        return 2 * fees[1] + fees[2], fees[2]

    def _suggested_tip(self) -> int:
        # Asked directly: web3's max_priority_fee falls back to a fee-history guess (and warns)
        # where the node lacks the method; the dev chains' tip is the better guess there.
        request = self.w3.manager.request_blocking
        try:
            tip = self.read(lambda: request(RPCEndpoint("eth_maxPriorityFeePerGas"), []))
            return int(tip, 16) if isinstance(tip, str) else int(tip)
        except (Web3Exception, ValueError, TypeError):
            return _FALLBACK_TIP_WEI

    # ------------------------------------------------------------------ reverts

    def _checked(self, sent: SentTransaction, receipt: TxReceipt) -> TxReceipt:
        if receipt["status"] == 1:
            return receipt
        tx_hash = receipt["transactionHash"].to_0x_hex()
        if receipt["gasUsed"] >= sent.gas:  # a REVERT returns unused gas; only running out doesn't
            values = {"gas_limit": sent.gas}
            raise TransactionReverted(tx_hash, "OutOfGas", b"", values)
        # On the state its block left, not the one before: a transaction reverted by another
        # one mined earlier in the same block (a race) succeeds there and would lose its reason.
        replay: dict[str, Any] = {"from": sent.sender, "data": sent.data, "value": sent.value}
        if sent.to is not None:
            replay["to"] = sent.to
        data: Any = b""
        try:
            self.read(lambda: self.w3.eth.call(replay, receipt["blockNumber"]))  # type: ignore[arg-type]
        except revert_types() as exc:
            data = revert_data(exc)
        raise self._reverted(tx_hash, data)

    def _reverted(self, tx_hash: str | None, data: Any) -> TransactionReverted:
        raw = bytes(HexBytes(data)) if isinstance(data, (str, bytes)) and data else b""
        name, values = self.errors.decode(raw)
        return TransactionReverted(tx_hash, name, raw, values)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (node errors can span many)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def node_message(exc: BaseException) -> str:
    """A node's error answer as it wrote it: web3 shows the whole JSON-RPC error dict."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    lines = message.strip().splitlines() if isinstance(message, str) else []
    return lines[0] if lines else one_line(exc)


def transient_reason(exc: BaseException) -> str | None:
    """A short reason when `exc` is a fault worth retrying (the node may come back), else None."""
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return f"HTTP {status}" if status >= 500 or status == 429 else None
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # the answer was cut short
        return "connection broken mid-answer"
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        return "connection refused or lost"
    return None
