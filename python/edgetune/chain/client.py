"""A typed client for the EdgeTune contract: one method per contract function.

Reads return dataclasses from `edgetune.chain.types`; writes return the transaction receipt.
A revert becomes `ContractRevert` whose message names the custom error and its arguments
(`EdgeTuneWrongPhase(taskId=1, current=VoteCommit, required=UpdateReveal)`), so a user sees why.
"""

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.logs import DISCARD
from web3.types import TxReceipt

from edgetune.chain.errors import ChainError, TransactionReverted
from edgetune.chain.types import (
    Ballot,
    Phase,
    RevealedUpdate,
    Status,
    TaskConfig,
    TaskFunds,
)

Sender = str | LocalAccount
# eth-tester reports a revert only as text: "execution reverted: b'<python bytes repr>'".
_TESTER_REVERT = re.compile(r"execution reverted: (b['\"].*['\"])$", re.DOTALL)
_ENUM_ARGS: dict[str, type] = {"current": Phase, "required": Phase}


class ContractRevert(TransactionReverted):
    """The contract refused a call with a custom error; `name` and `args` say which and why."""

    def __init__(self, name: str, args: dict[str, Any], data: bytes) -> None:
        shown = ", ".join(f"{k}={_show(k, v)}" for k, v in args.items())
        ChainError.__init__(self, f"{name}({shown})")
        self.tx_hash, self.error, self.data = "", name, data
        self.name, self.args_by_name = name, args


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    arg_names: list[str]
    arg_types: list[str]


class EdgeTuneClient:
    """Calls one deployed EdgeTune contract as one sender (`as_sender` switches accounts)."""

    def __init__(self, w3: Web3, address: str, abi: list[dict], sender: Sender) -> None:
        self.w3 = w3
        self.contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
        self.sender = sender
        self._errors = _error_specs(abi)

    @property
    def address(self) -> str:
        return self.contract.address

    @property
    def sender_address(self) -> str:
        return self.sender if isinstance(self.sender, str) else self.sender.address

    def as_sender(self, sender: Sender) -> "EdgeTuneClient":
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
        return self._guard(lambda: fn.call({"from": self.sender_address}))

    def _send(self, fn: ContractFunction, value: int = 0) -> TxReceipt:
        """Estimates gas first: a revert then surfaces with its data, before any fee is spent."""
        tx: dict[str, Any] = {"from": self.sender_address, "value": value}
        if isinstance(self.sender, str):
            tx_hash = self._guard(lambda: fn.transact(tx))
        else:
            tx["nonce"] = self.w3.eth.get_transaction_count(self.sender.address, "pending")
            built = self._guard(lambda: fn.build_transaction(tx))
            signed = self.sender.sign_transaction(built)
            tx_hash = self._guard(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise TransactionReverted(tx_hash.hex(), "reverted after estimation", b"")
        return receipt

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except ContractCustomError as error:
            raise self.decode_revert(_revert_bytes(error.data)) from None
        except TransactionFailed as error:
            match = _TESTER_REVERT.match(str(error.args[0]))
            if match is None:
                raise ChainError(f"transaction failed: {error}") from None
            raise self.decode_revert(ast.literal_eval(match.group(1))) from None
        except (ContractLogicError, Web3RPCError) as error:
            raise ChainError(f"contract call failed: {error}") from None

    def decode_revert(self, data: bytes) -> ChainError:
        """The custom error (from this contract's ABI) that `data` encodes."""
        spec = self._errors.get(data[:4])
        if spec is None:
            return TransactionReverted("", f"unknown revert data 0x{data.hex()}", data)
        values = [
            Web3.to_checksum_address(v) if t == "address" else v
            for t, v in zip(spec.arg_types, decode(spec.arg_types, data[4:]), strict=True)
        ]
        return ContractRevert(spec.name, dict(zip(spec.arg_names, values, strict=True)), data)


def _error_specs(abi: list[dict]) -> dict[bytes, _ErrorSpec]:
    specs = {}
    for entry in abi:
        if entry["type"] != "error":
            continue
        types = [_abi_type(arg) for arg in entry["inputs"]]
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
        specs[selector] = _ErrorSpec(entry["name"], [a["name"] for a in entry["inputs"]], types)
    return specs


def _abi_type(arg: dict) -> str:
    if arg["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in arg["components"])
        return f"({inner}){arg['type'][5:]}"
    return arg["type"]


def _revert_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    return bytes.fromhex(str(data).removeprefix("0x"))


def _show(name: str, value: Any) -> str:
    if name in _ENUM_ARGS:
        return _ENUM_ARGS[name](value).name
    if isinstance(value, bytes):
        text = value.rstrip(b"\0")
        return text.decode() if text.isascii() and text.isalnum() else "0x" + value.hex()
    return str(value)
