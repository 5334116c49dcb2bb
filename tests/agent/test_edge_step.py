"""One `EdgeAgent.step` around a failed transaction: which failures are races to retry."""

from types import SimpleNamespace

import pytest

from edgetune.agent.edge import EdgeAgent
from edgetune.chain.errors import TransactionReverted
from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import Phase


def stepping_into(error: Exception) -> tuple[EdgeAgent, list[str]]:
    """An agent whose next action raises `error` (no chain, no model)."""
    logs: list[str] = []
    agent = object.__new__(EdgeAgent)
    agent.task_id, agent.log = 1, logs.append
    status = SimpleNamespace(phase=Phase.SCORE_COMMIT, round=2)
    agent.client = SimpleNamespace(status=lambda task_id: status)

    def action(_status):
        raise error

    agent._next_action = lambda _status: action
    return agent, logs


def revert(tx_hash: str | None, error: str, data: bytes) -> ContractRevert:
    return ContractRevert.of(TransactionReverted(tx_hash, error, data))


def test_a_mined_transaction_that_ran_out_of_gas_after_a_race_is_retried():
    # What anvil showed with three agent processes: an edge's score commit, estimated while
    # another edge had not committed yet, became the stage's closing commit and ran out of gas.
    agent, logs = stepping_into(revert("0xabc", "revert without data", b""))
    assert agent.step() == (True, True)
    assert "retrying" in logs[-1]


@pytest.mark.parametrize(
    "error",
    [
        revert(None, "revert without data", b""),  # refused at estimation: not a gas race
        revert("0xabc", "EdgeTuneCommitmentMismatch", bytes.fromhex("deadbeef")),
    ],
)
def test_other_failed_transactions_still_stop_the_agent(error):
    agent, _ = stepping_into(error)
    with pytest.raises(ContractRevert):
        agent.step()
