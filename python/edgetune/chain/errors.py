"""Errors of the chain subpackage. Each message is one line naming the cause (a file:line, a URL,
a revert name), so the CLI and the agent loop can print it without a traceback."""

from typing import Any

from edgetune.errors import EdgetuneError


class ChainError(EdgetuneError):
    """Root of every chain failure."""


class CompilerError(ChainError):
    """Solidity sources failed to compile, or no working compiler was found."""


class NodeError(ChainError):
    """A local node (anvil, Hardhat) could not be started, found or stopped."""


class ChainUnavailable(ChainError):
    """No JSON-RPC endpoint answers at the given URL: at connect, or through a whole retry budget
    (connection refused, timed out, HTTP 5xx). Transient: a caller may poll again later."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no chain answers at {url}: {reason}")
        self.url = url


class KeyNotConfigured(ChainError):
    """A remote chain was chosen but no signing key (env var or keystore) was given."""


class TransactionReverted(ChainError):
    """A transaction reverted (at gas estimation, so nothing was sent, or on chain).

    `error` names the decoded custom error (`Error`/`Panic` for the built-in ones) and `values`
    holds its arguments, so the contract client can map it to its own exception class; `data` is
    the raw revert data."""

    def __init__(
        self, tx_hash: str | None, error: str, data: bytes, values: dict[str, Any] | None = None
    ) -> None:
        where = f"transaction {tx_hash}" if tx_hash else "transaction (at gas estimation)"
        shown = (
            "" if values is None else "(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"
        )
        super().__init__(f"{where} reverted: {error}{shown}")
        self.tx_hash, self.error, self.data, self.values = tx_hash, error, data, values or {}


class DeploymentNotFound(ChainError):
    """No usable EdgeTune deployment (deployments/ file, last run, --contract) for this chain."""


class InvalidAddress(ChainError):
    """A contract address that is not 20 bytes of hex (or fails its checksum)."""


class NoContractCode(ChainError):
    """The address holds no contract on the connected chain (wrong chain, or a reset one)."""


class NotEdgeTune(ChainError):
    """The address holds a contract that does not answer EdgeTune's ABI."""


class RecordUnreadable(ChainError):
    """A deployment or run record file that cannot be read, parsed or written."""


class TransactionPending(ChainError):
    """A sent transaction has no receipt yet after the wait: it is still in the node's pool (or
    lost on the way, and resent). It stays journaled; the sender's next transaction awaits it (or
    replaces it with a higher fee) instead of signing a second one for the same intent."""

    def __init__(self, tx_hash: str, nonce: int, waited_s: float) -> None:
        super().__init__(
            f"transaction {tx_hash} (nonce {nonce}) still pending after {waited_s:g} s; "
            "it is journaled: retry to keep waiting for it, or replace it with a higher fee"
        )
        self.tx_hash, self.nonce = tx_hash, nonce


class TransactionDropped(ChainError):
    """A signed transaction can never be mined: its nonce is past the sender's next one on the
    chain, which therefore lost an earlier transaction (a node restarted from an older saved
    state). It is dropped from the journal and the nonces are re-read; the caller looks at the
    chain again and sends what is still needed."""

    def __init__(self, tx_hash: str, nonce: int, expected_nonce: int) -> None:
        super().__init__(
            f"transaction {tx_hash} (nonce {nonce}) dropped: the chain's next nonce for its "
            f"sender is {expected_nonce} (the node lost an earlier transaction)"
        )
        self.tx_hash, self.nonce, self.expected_nonce = tx_hash, nonce, expected_nonce


class NonceTaken(ChainError):
    """Another transaction of the same key (another process, another wallet) used the nonce of a
    journaled one, which can therefore never be mined."""

    def __init__(self, tx_hash: str, nonce: int, sender: str) -> None:
        super().__init__(
            f"transaction {tx_hash} will never be mined: nonce {nonce} of {sender} "
            "was used by another transaction"
        )
        self.tx_hash, self.nonce = tx_hash, nonce


class JournalUnreadable(ChainError):
    """A transaction journal file that cannot be read or parsed (corrupt, or not a file)."""


class JournalUnwritable(ChainError):
    """A transaction journal file that cannot be written (a full disk, a read-only folder)."""


class TransactionRefused(ChainError):
    """The node refused a transaction for a reason other than a revert (at gas estimation, or
    at broadcast): nothing was mined."""


class InvalidArgument(ChainError):
    """A value that does not fit its contract function's ABI type (a negative id, a number
    above its uint's range): caught before anything is sent."""


class InvalidPrivateKey(ChainError):
    """The configured signing key is not a private key (32 bytes of hex)."""


class TaskNotFound(ChainError):
    """No task has this id on the contract."""


class HistoryUnavailable(ChainError):
    """The node no longer serves the events a task's history is rebuilt from."""
