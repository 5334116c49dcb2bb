"""Errors of the chain subpackage. Each message is one line naming the cause (a file:line, a URL,
a revert name), so the CLI and the agent loop can print it without a traceback."""

from edgetune.errors import EdgetuneError


class ChainError(EdgetuneError):
    """Root of every chain failure."""


class CompilerError(ChainError):
    """Solidity sources failed to compile, or no working compiler was found."""


class NodeError(ChainError):
    """A local node (anvil, Hardhat) could not be started, found or stopped."""


class ChainUnavailable(ChainError):
    """No JSON-RPC endpoint answers at the given URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no chain answers at {url}: {reason}")
        self.url = url


class KeyNotConfigured(ChainError):
    """A remote chain was chosen but no signing key (env var or keystore) was given."""


class TransactionReverted(ChainError):
    """A transaction was mined but reverted; `error` names the custom error when it is known."""

    def __init__(self, tx_hash: str, error: str, data: bytes) -> None:
        super().__init__(f"transaction {tx_hash} reverted: {error}")
        self.tx_hash, self.error, self.data = tx_hash, error, data
