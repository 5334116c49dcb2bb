"""A typed client for the EdgeTune contract: one method per contract function.

Reads return dataclasses from `edgetune.chain.types`; writes return the transaction receipt.
A revert raises the exception class of its custom error (`edgetune.chain.reverts`), whose
message names the error and its arguments, so a user sees why and code catches it by type.
A value that does not fit its ABI type (a negative id, a number beyond its uint) raises
InvalidArgument naming the function, the argument and the value, before anything is sent.
"""

from collections.abc import Callable, Sequence
from typing import Any

from eth_abi.codec import ABICodec
from eth_account.signers.local import LocalAccount
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import MismatchedABI, Web3ValidationError
from web3.logs import DISCARD
from web3.types import TxReceipt

from edgetune.chain.connect import Chain, call, send
from edgetune.chain.errors import InvalidArgument, TransactionReverted
from edgetune.chain.revert_data import abi_type
from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import (
    Attestation,
    Phase,
    RevealedUpdate,
    ScoreBallot,
    Status,
    TaskConfig,
    TaskFunds,
)


class EdgeTuneClient:
    """Calls one deployed EdgeTune contract as one sender (`as_sender` switches accounts)."""

    def __init__(self, chain: Chain, address: str, abi: list[dict], sender: LocalAccount) -> None:
        self.chain = chain
        self.w3 = chain.w3
        self.contract = chain.w3.eth.contract(
            address=chain.w3.to_checksum_address(address), abi=abi
        )
        self.functions = _CheckedFunctions(self.contract)
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

    def create_task(
        self, config: TaskConfig, pool_wei: int, allowlist: Sequence[str] = ()
    ) -> tuple[int, TxReceipt]:
        fn = self.functions.createTask(config.as_tuple(), list(allowlist))
        receipt = self._send(fn, pool_wei)
        (event,) = self.receipt_events(receipt, "TaskCreated")
        return event.taskId, receipt

    def register(self, task_id: int, stake_wei: int) -> TxReceipt:
        return self._send(self.functions.register(task_id), stake_wei)

    def start(self, task_id: int) -> TxReceipt:
        return self._send(self.functions.start(task_id))

    def cancel(self, task_id: int) -> TxReceipt:
        return self._send(self.functions.cancel(task_id))

    def request_exit(self, task_id: int) -> TxReceipt:
        return self._send(self.functions.requestExit(task_id))

    def release_stake(self, task_id: int) -> TxReceipt:
        return self._send(self.functions.releaseStake(task_id))

    def refund_pool(self, task_id: int) -> TxReceipt:
        return self._send(self.functions.refundPool(task_id))

    def withdraw(self) -> TxReceipt:
        return self._send(self.functions.withdraw())

    def commit(self, task_id: int, round_: int, stage: Phase, commitment: bytes) -> TxReceipt:
        return self._send(self.functions.commit(task_id, round_, int(stage), commitment))

    def reveal_update(
        self, task_id: int, round_: int, update_hash: bytes, cid: str, salt: bytes
    ) -> TxReceipt:
        fn = self.functions.revealUpdate(task_id, round_, update_hash, cid, salt)
        return self._send(fn)

    def reveal_scores(
        self, task_id: int, round_: int, ballot: ScoreBallot, salt: bytes
    ) -> TxReceipt:
        fn = self.functions.revealScores(
            task_id, round_, ballot.valid_mask, ballot.copy_mask, ballot.packed_scores(), salt
        )
        return self._send(fn)

    def tally(
        self, task_id: int, round_: int, ballots: Sequence[ScoreBallot], part: int = 0
    ) -> TxReceipt:
        """Sends one part of the tally (updates 32·part on): every revealed ballot, in reveal
        order, cut to that part's scores. The last part emits `RoundTallied`."""
        fn = self.functions.tally(task_id, round_, part, [b.as_tuple(part) for b in ballots])
        return self._send(fn)

    def reveal_attestation(
        self, task_id: int, round_: int, attestation: Attestation, salt: bytes
    ) -> TxReceipt:
        a = attestation
        fn = self.functions.revealAttestation(
            task_id, round_, a.aggregate_hash, a.aggregate_cid, a.approve, salt
        )
        return self._send(fn)

    def finalize(self, task_id: int) -> TxReceipt:
        """Settles the next (up to) 64 edges of the round; the call that settles the last one
        emits `RoundFinalized` and moves the task on, the others emit `RoundSettling`."""
        return self._send(self.functions.finalize(task_id))

    # ------------------------------------------------------------------ reads

    def phase(self, task_id: int) -> Phase:
        return Phase(self._call(self.functions.phase(task_id)))

    def status(self, task_id: int, edge: str | None = None) -> Status:
        fn = self.functions.status(task_id, edge or self.sender_address)
        return Status.from_tuple(self._call(fn))

    def task_config(self, task_id: int) -> TaskConfig:
        return TaskConfig.from_tuple(self._call(self.functions.taskConfig(task_id)))

    def task_funds(self, task_id: int) -> TaskFunds:
        return TaskFunds(*self._call(self.functions.taskFunds(task_id)))

    def revealed_updates(self, task_id: int, round_: int) -> list[RevealedUpdate]:
        """The round's updates in reveal order (the order masks and scores index), from events."""
        logs = self.round_events(task_id, round_, "UpdateRevealed")
        rows = [RevealedUpdate(e.edge, e.index, bytes(e.updateHash), e.cid) for e in logs]
        return sorted(rows, key=lambda u: u.index)

    def score_ballots(self, task_id: int, round_: int) -> list[ScoreBallot]:
        """The round's revealed score ballots in reveal order, from events (what `tally` takes)."""
        logs = self.round_events(task_id, round_, "ScoresRevealed")
        return [ScoreBallot.unpack(e.edge, e.validMask, e.copyMask, bytes(e.scores)) for e in logs]

    def medians(self, task_id: int, round_: int) -> list[int]:
        """The round's median score per update once tallied (from RoundTallied), else []."""
        tallied = self.round_events(task_id, round_, "RoundTallied")
        return list(tallied[0].medians) if tallied else []

    def edges_of(self, task_id: int) -> list[str]:
        return list(self._call(self.functions.edgesOf(task_id)))

    def round_events(self, task_id: int, round_: int, name: str) -> list[Any]:
        """Every `name` event of one round, in log order (block, then index in block)."""
        return [log.args for log in self.logs(name, taskId=task_id, round=round_)]

    def logs(self, name: str, from_block: int = 0, **filters: Any) -> list[Any]:
        """Every `name` log since `from_block` whose indexed arguments match `filters`, in log
        order; retried through RPC faults like every read."""
        event = self.contract.events[name]()
        return self.chain.read(
            lambda: event.get_logs(from_block=from_block, argument_filters=filters or None)
        )

    def stake_of(self, task_id: int, edge: str) -> int:
        return self._call(self.functions.stakeOf(task_id, edge))

    def owed(self, account: str) -> int:
        return self._call(self.functions.owed(account))

    def task_count(self) -> int:
        return self._call(self.functions.taskCount())

    def max_edges(self) -> int:
        return self._call(self.functions.MAX_EDGES())

    def receipt_events(self, receipt: TxReceipt, name: str) -> list[Any]:
        """The arguments of every `name` event this contract emitted in `receipt`."""
        events = self.contract.events[name]().process_receipt(receipt, errors=DISCARD)
        return [event.args for event in events]

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: ContractFunction) -> Any:
        return self._guard(fn, lambda: call(self.chain, fn, self.sender_address))

    def _send(self, fn: ContractFunction, value: int = 0) -> TxReceipt:
        return self._guard(fn, lambda: send(self.chain, fn, self.sender, value=value))

    def _guard(self, fn: ContractFunction, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except TransactionReverted as reverted:
            raise ContractRevert.of(reverted) from None
        except (MismatchedABI, Web3ValidationError):  # web3 met a value only when encoding
            raise InvalidArgument(misfit(self.contract, fn.fn_name, fn.args)) from None


class _CheckedFunctions:
    """`contract.functions` whose calls raise InvalidArgument, not web3's many-line
    MismatchedABI, for a value that does not fit its ABI type."""

    def __init__(self, contract: Contract) -> None:
        self._contract = contract

    def __getattr__(self, name: str) -> Callable[..., ContractFunction]:
        build = getattr(self._contract.functions, name)

        def checked(*args: Any) -> ContractFunction:
            try:
                return build(*args)
            except (MismatchedABI, Web3ValidationError):
                raise InvalidArgument(misfit(self._contract, name, args)) from None

        return checked


def misfit(contract: Contract, name: str, args: Sequence[Any]) -> str:
    """`name: argument value does not fit type`, for the first argument of `name(*args)` that
    does not fit (a struct's field named by its path)."""
    entries = [e for e in contract.abi if e.get("name") == name]
    inputs = next((e["inputs"] for e in entries if len(e["inputs"]) == len(args)), [])
    for spec, value in zip(inputs, args, strict=False):
        if found := _first_misfit(contract.w3.codec, spec, value, spec["name"] or "argument"):
            return f"{name}: {found}"
    shown = ", ".join(_short(a) for a in args)
    return f"{name}({shown}): the arguments do not fit its ABI"


def _first_misfit(codec: ABICodec, spec: dict[str, Any], value: Any, path: str) -> str | None:
    components = spec.get("components")
    if spec["type"] == "tuple" and components and isinstance(value, (tuple, list)):
        for field, part in zip(components, value, strict=False):
            if found := _first_misfit(codec, field, part, f"{path}.{field['name']}"):
                return found
        if len(value) == len(components):
            return None
    if codec.is_encodable(abi_type(spec), value):
        return None
    return f"{path} {_short(value)} does not fit {abi_type(spec)}"


def _short(value: Any) -> str:
    """A number whole (its digits are the point), anything else cut to one short line."""
    shown = repr(value)
    return shown if isinstance(value, int) or len(shown) <= 60 else shown[:57] + "..."
