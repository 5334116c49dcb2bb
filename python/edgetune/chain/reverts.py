"""One exception class per custom error of the EdgeTune contract, all under `ContractRevert`.

The client raises the class named after the error, so callers catch what they expect
(`except EdgeTuneWrongPhase`) instead of matching names as strings, and `str()` still reads
`EdgeTuneWrongPhase(taskId=1, current=SCORE_COMMIT, required=UPDATE_REVEAL)`.
tests/chain/test_reverts.py checks that every error in the ABI has its class here.
"""

from typing import Any

from edgetune.chain.errors import TransactionReverted
from edgetune.chain.types import Phase


class ContractRevert(TransactionReverted):
    """The contract refused a call with a custom error; `error` and `values` say which and why."""

    phase_args: tuple[str, ...] = ("stage",)  # arguments that hold a Phase, shown by name

    def __init__(self, reverted: TransactionReverted) -> None:
        TransactionReverted.__init__(self, reverted.tx_hash, reverted.error, reverted.data)
        self.values = reverted.values
        shown = ", ".join(f"{k}={self._show(k, v)}" for k, v in reverted.values.items())
        self.args = (f"{reverted.error}({shown})",)

    @staticmethod
    def of(reverted: TransactionReverted) -> "ContractRevert":
        """The exception for `reverted`: its error's own class, or this one for a built-in."""
        return _BY_NAME.get(reverted.error, ContractRevert)(reverted)

    def _show(self, name: str, value: Any) -> str:
        if name in self.phase_args and isinstance(value, int):
            return Phase(value).name
        if isinstance(value, bytes):
            text = value.rstrip(b"\0")
            return text.decode() if text.isascii() and text.isalnum() else "0x" + value.hex()
        return str(value)


class EdgeTuneInvalidConfig(ContractRevert):
    """A task parameter is out of range (`field`, `value`)."""


class EdgeTuneUnknownTask(ContractRevert):
    """No task has this id."""


class EdgeTuneNotTaskOwner(ContractRevert):
    """Only the task's owner may do this."""


class EdgeTuneWrongPhase(ContractRevert):
    """The task is not in the phase this call needs (often: another transaction moved it on)."""

    phase_args = ("current", "required")


class EdgeTuneWrongRound(ContractRevert):
    """The call names another round than the current one."""


class EdgeTuneNotCommitPhase(ContractRevert):
    """`commit` was given a stage that is not a commit phase."""

    phase_args = ("given",)


class EdgeTuneNotAllowed(ContractRevert):
    """The task has an allowlist and the sender is not on it."""


class EdgeTuneAlreadyRegistered(ContractRevert):
    """The sender is already registered for the task."""


class EdgeTuneTaskFull(ContractRevert):
    """Every slot of the task is taken."""


class EdgeTuneStakeTooLow(ContractRevert):
    """The stake sent is below the task's minimum."""


class EdgeTuneNotActiveEdge(ContractRevert):
    """The sender is not an active edge of the task."""


class EdgeTuneZeroCommitment(ContractRevert):
    """A zero commitment is refused."""


class EdgeTuneReusedCommitment(ContractRevert):
    """The commitment equals the sender's previous one this round."""


class EdgeTuneAlreadyCommitted(ContractRevert):
    """The sender already committed in this stage."""


class EdgeTuneNotCommitted(ContractRevert):
    """Nothing to reveal: the sender did not commit in this stage."""


class EdgeTuneAlreadyRevealed(ContractRevert):
    """The sender already revealed in this stage."""


class EdgeTuneCommitmentMismatch(ContractRevert):
    """The revealed values and salt do not open the sender's commitment."""


class EdgeTuneDuplicateUpdate(ContractRevert):
    """An update with the same bytes was already revealed this round."""


class EdgeTuneInvalidMask(ContractRevert):
    """A ballot's masks name updates that were not revealed, or copies that are not valid."""


class EdgeTuneScoresLength(ContractRevert):
    """A ballot does not carry one score per revealed update."""


class EdgeTuneBallotCount(ContractRevert):
    """`tally` was not given every revealed ballot."""


class EdgeTuneBallotsMismatch(ContractRevert):
    """`tally` was given ballots other than the revealed ones, or in another order."""


class EdgeTuneWrongTallyPart(ContractRevert):
    """`tally` was sent for a part other than the next one: another keeper sent it first."""


class EdgeTuneCidTooLong(ContractRevert):
    """A revealed CID is longer than the contract's MAX_CID_BYTES (it would weigh on finalize)."""


class EdgeTuneNotDelegated(ContractRevert):
    """RoundSettler was called directly; only EdgeTune's finalize runs it (by delegatecall)."""


class EdgeTuneStakeLocked(ContractRevert):
    """The stake stays locked while the edge is active in a running task."""


class EdgeTuneNothingToWithdraw(ContractRevert):
    """Nothing is owed to the account."""


class EdgeTuneNothingToRefund(ContractRevert):
    """The task's pool is empty."""


# Errors of the OpenZeppelin code EdgeTune builds on; they are in its ABI too.


class ReentrancyGuardReentrantCall(ContractRevert):
    """A call re-entered `withdraw` while it was paying out (refused by the lock)."""


class AddressEmptyCode(ContractRevert):
    """EdgeTune's settler has no code: the deployment is broken (never on a correct deploy)."""


class FailedCall(ContractRevert):
    """Paying out failed: the receiving account (a contract) refused the ether."""


class InsufficientBalance(ContractRevert):
    """The contract held less ether than it tried to send (never, if funds are conserved)."""


class SafeCastOverflowedUintDowncast(ContractRevert):
    """A value does not fit its storage type (a stake above 2^128 wei, say)."""


_BY_NAME: dict[str, type[ContractRevert]] = {c.__name__: c for c in ContractRevert.__subclasses__()}

# Reverts that only mean another transaction got there first (a phase closed early, someone
# else tallied or finalized): the agent re-reads the chain and carries on.
RACES: tuple[type[ContractRevert], ...] = (
    EdgeTuneWrongPhase,
    EdgeTuneWrongRound,
    EdgeTuneWrongTallyPart,
)


def revert_classes() -> dict[str, type[ContractRevert]]:
    """Every contract error's class, by error name."""
    return dict(_BY_NAME)
