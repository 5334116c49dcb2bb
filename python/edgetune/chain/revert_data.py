"""Revert data: getting it out of web3's and eth-tester's exceptions, and naming it.

The contract client registers its ABI's error entries with an `ErrorDecoder`, so a revert reads
`EdgeTuneWrongPhase(current=2, expected=3)` rather than raw bytes.
"""

import ast
import re
import sys
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractLogicError

_BYTES_REPR = re.compile(r"b'.*'|b\".*\"", re.DOTALL)  # repr of bytes in a message
_BUILTIN_ERRORS: dict[bytes, tuple[str, list[str], list[str]]] = {
    bytes.fromhex("08c379a0"): ("Error", ["message"], ["string"]),
    bytes.fromhex("4e487b71"): ("Panic", ["code"], ["uint256"]),
}


def revert_types() -> tuple[type[Exception], ...]:
    """The exceptions a revert arrives as: web3's, and eth-tester's once the embedded chain has
    loaded it (looked up, not imported: eth-tester costs ~0.8 s of every command's start, and
    nothing can raise its exceptions before it is loaded)."""
    tester = sys.modules.get("eth_tester.exceptions")
    return (ContractLogicError, tester.TransactionFailed) if tester else (ContractLogicError,)


class ErrorDecoder:
    """Maps 4-byte custom-error selectors to names and decodes their arguments."""

    def __init__(self) -> None:
        self._errors = dict(_BUILTIN_ERRORS)

    def register(self, abi: list[dict[str, Any]]) -> None:
        """Learn every `type: error` entry of a contract ABI."""
        for entry in abi:
            if entry.get("type") == "error":
                names = [arg["name"] for arg in entry["inputs"]]
                types = [abi_type(arg) for arg in entry["inputs"]]
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


def revert_data(exc: BaseException) -> Any:
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


def abi_type(arg: dict[str, Any]) -> str:
    """Canonical ABI type, expanding tuples (structs) as eth_abi expects."""
    kind = arg["type"]
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in arg["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind
