"""A typed client for the EdgeTune contract: one method per contract function.

Reads return dataclasses from `edgetune.chain.types`; writes return the transaction receipt.
A revert becomes `ContractRevert` whose message names the custom error and its arguments
(`EdgeTuneWrongPhase(taskId=1, current=VOTE_COMMIT, required=UPDATE_REVEAL)`), so a user sees why.
"""

from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from edgetune.chain.connect import Chain, call, send
from edgetune.chain.errors import TransactionReverted
from edgetune.chain.types import (
    Ballot,
    Phase,
    RevealedUpdate,
    Status,
    TaskConfig,
    TaskFunds,
)

_ENUM_ARGS: dict[str, type] = {"current": Phase, "required": Phase}


class ContractRevert(TransactionReverted):
    """The contract refused a call with a custom error; `error` and `values` say which and why."""

    def __init__(self, reverted: TransactionReverted) -> None:
        shown = ", ".join(f"{k}={_show(k, v)}" for k, v in reverted.values.items())
        TransactionReverted.__init__(self, reverted.tx_hash, reverted.error, reverted.data)
        self.args = (f"{reverted.error}({shown})",)
        self.values = reverted.values


class EdgeTuneClient:
    """Calls one deployed EdgeTune contract as one sender (`as_sender` switches accounts)."""

    def __init__(self, chain: Chain, address: str, abi: list[dict], sender: LocalAccount) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.contract = chain.w3.eth.contract(
            address=chain.w3.to_checksum_address(address), abi=abi
        )
        self.sender = sender
        chain.errors.register(abi)

    @property
    def address(self) -> str:
        return self.contract.address

    @property
    def sender_address(self) -> str:
        return self.sender.address

    def as_sender(self, sender: LocalAccount) -> "EdgeTuneClient":
        clone = object.__new__(EdgeTuneClient)
        clone.__dict__.update(self.__dict__, sender=sender)
        return clone

    # ------------------------------------------------------------------ writes

    def create_task(self, config: TaskConfig, pool_wei: int) -> tuple[int, TxReceipt]:
        receipt = self._send(self.contract.functions.createTask(config.as_tuple()), pool_wei)
        (event,) = self.receipt_events(receipt, "TaskCreated")
        return event.taskId, receipt

    def register(self, task_id: int, stake_wei: int) -> TxReceipt:
        return self._send(self.contract.functions.register(task_id), stake_wei)

    def start(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.start(task_id))

    def cancel(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.cancel(task_id))

    def request_exit(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.requestExit(task_id))

    def release_stake(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.releaseStake(task_id))

    def refund_pool(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.refundPool(task_id))

    def withdraw(self) -> TxReceipt:
        return self._send(self.contract.functions.withdraw())

    def commit_update(self, task_id: int, round_: int, commitment: bytes) -> TxReceipt:
        return self._send(self.contract.functions.commitUpdate(task_id, round_, commitment))

    def reveal_update(
        self, task_id: int, round_: int, update_hash: bytes, cid: str, samples: int, salt: bytes
    ) -> TxReceipt:
        fn = self.contract.functions.revealUpdate(task_id, round_, update_hash, cid, samples, salt)
        return self._send(fn)

    def commit_vote(self, task_id: int, round_: int, commitment: bytes) -> TxReceipt:
        return self._send(self.contract.functions.commitVote(task_id, round_, commitment))

    def reveal_vote(self, task_id: int, round_: int, ballot: Ballot, salt: bytes) -> TxReceipt:
        fn = self.contract.functions.revealVote(task_id, round_, ballot.as_tuple(), salt)
        return self._send(fn)

    def finalize(self, task_id: int) -> TxReceipt:
        return self._send(self.contract.functions.finalize(task_id))

    # ------------------------------------------------------------------ reads

    def phase(self, task_id: int) -> Phase:
        return Phase(self._call(self.contract.functions.phase(task_id)))

    def status(self, task_id: int, edge: str | None = None) -> Status:
        fn = self.contract.functions.status(task_id, edge or self.sender_address)
        return Status.from_tuple(self._call(fn))

    def task_config(self, task_id: int) -> TaskConfig:
        return TaskConfig.from_tuple(self._call(self.contract.functions.taskConfig(task_id)))

    def task_funds(self, task_id: int) -> TaskFunds:
        return TaskFunds(*self._call(self.contract.functions.taskFunds(task_id)))

    def revealed_updates(self, task_id: int, round_: int) -> list[RevealedUpdate]:
        rows = self._call(self.contract.functions.revealedUpdates(task_id, round_))
        return [RevealedUpdate(*row) for row in rows]

    def stake_of(self, task_id: int, edge: str) -> int:
        return self._call(self.contract.functions.stakeOf(task_id, edge))

    def owed(self, account: str) -> int:
        return self._call(self.contract.functions.owed(account))

    def task_count(self) -> int:
        return self._call(self.contract.functions.taskCount())

    def max_edges(self) -> int:
        return self._call(self.contract.functions.MAX_EDGES())

    def receipt_events(self, receipt: TxReceipt, name: str) -> list[Any]:
        """The arguments of every `name` event this contract emitted in `receipt`."""
        events = self.contract.events[name]().process_receipt(receipt, errors=DISCARD)
        return [event.args for event in events]

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: ContractFunction) -> Any:
        return self._guard(lambda: call(self.chain, fn, self.sender_address))

    def _send(self, fn: ContractFunction, value: int = 0) -> TxReceipt:
        return self._guard(lambda: send(self.chain, fn, self.sender, value=value))

    @staticmethod
    def _guard(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except TransactionReverted as reverted:
            raise ContractRevert(reverted) from None


def _show(name: str, value: Any) -> str:
    if name in _ENUM_ARGS:
        return _ENUM_ARGS[name](value).name
    if isinstance(value, bytes):
        text = value.rstrip(b"\0")
        return text.decode() if text.isascii() and text.isalnum() else "0x" + value.hex()
    return str(value)
