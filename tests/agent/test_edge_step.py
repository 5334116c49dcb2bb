"""One `EdgeAgent.step` around a failed transaction: which failures are races to go on from,
which to retry, and which stop the agent."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from edgetune.agent.edge import EdgeAgent
from edgetune.agent.settings import AgentSettings
from edgetune.chain.errors import NonceTaken, TransactionDropped, TransactionReverted
from edgetune.chain.reverts import ContractRevert
from edgetune.chain.types import Phase, Status, Step

from .statuses import COMMITTING

BEFORE = replace(
    COMMITTING,
    phase=Phase.SCORE_COMMIT,
    round=2,
    phase_end=90,
    reveals=3,
    done=Step.UPDATE_COMMITTED | Step.UPDATE_REVEALED,
)


def stepping_into(error: Exception, *after: Status) -> tuple[EdgeAgent, list[str]]:
    """An agent whose next action raises `error` (no chain, no model); the chain reads BEFORE
    first, then each of `after` (the last one for good)."""
    logs: list[str] = []
    agent = object.__new__(EdgeAgent)
    agent.task_id, agent.log, agent._failed, agent._waiting = 1, logs.append, None, None
    reads = [BEFORE, *after]
    agent.client = SimpleNamespace(
        status=lambda task_id: reads.pop(0) if len(reads) > 1 else reads[0]
    )

    def action(_status):
        raise error

    agent._next_action = lambda _status: action
    return agent, logs


def revert(tx_hash: str | None, error: str, data: bytes = b"") -> ContractRevert:
    return ContractRevert.of(TransactionReverted(tx_hash, error, data))


def test_a_mined_transaction_that_ran_out_of_gas_after_a_race_is_retried_once():
    # What anvil showed with three agent processes: an edge's score commit, estimated while
    # another edge had not committed yet, became the stage's closing commit and ran out of gas.
    agent, logs = stepping_into(revert("0xabc", "OutOfGas"))  # as the transport names it
    assert agent.step() == (True, True)
    assert "retrying" in logs[-1]
    # The same failure again on a chain that still has not moved is no race: it would repeat.
    with pytest.raises(ContractRevert):
        agent.step()


@pytest.mark.parametrize(
    ("error", "after"),
    [
        # Another edge tallied first: the phase moved on under our own tally.
        (
            revert(None, "EdgeTuneBallotCount", bytes.fromhex("deadbeef")),
            replace(BEFORE, phase=Phase.ATTEST_COMMIT),
        ),
        # Our own earlier commit (its receipt timed out) landed after all.
        (
            revert(None, "EdgeTuneAlreadyCommitted", bytes.fromhex("deadbeef")),
            replace(BEFORE, done=BEFORE.done | Step.SCORES_COMMITTED),
        ),
        # Someone finalized the round first.
        (
            revert("0xabc", "EdgeTuneNotActiveEdge", bytes.fromhex("deadbeef")),
            replace(BEFORE, round=3),
        ),
    ],
)
def test_any_revert_on_a_chain_that_moved_is_another_transaction_being_first(error, after):
    agent, logs = stepping_into(error, after)
    assert agent.step() == (True, True)
    assert "another transaction was first" in logs[-1]


def test_a_phase_race_on_an_unchanged_status_waits_for_the_next_block():
    # Estimated on the phase's last block, the transaction would land after it: the status read
    # on that block still shows the phase, so nothing looks moved yet. Not fatal: poll again.
    agent, logs = stepping_into(revert(None, "EdgeTuneWrongPhase", bytes.fromhex("deadbeef")))
    assert agent.step() == (False, True)
    assert "another transaction was first" in logs[-1]


@pytest.mark.parametrize(
    "error",
    [
        revert(None, "revert without data"),  # refused at estimation: not a gas race
        revert("0xabc", "EdgeTuneCommitmentMismatch", bytes.fromhex("deadbeef")),
        revert(None, "EdgeTuneAlreadyCommitted", bytes.fromhex("deadbeef")),
    ],
)
def test_a_revert_on_an_unchanged_status_stops_the_agent(error):
    agent, _ = stepping_into(error)
    with pytest.raises(ContractRevert):
        agent.step()


def test_a_change_that_is_not_our_progress_is_no_excuse():
    # Another edge's reveal landed meanwhile (counts changed), but nothing the revert could be
    # about moved: a commitment that does not open is still our bug.
    error = revert("0xabc", "EdgeTuneCommitmentMismatch", bytes.fromhex("deadbeef"))
    agent, _ = stepping_into(error, replace(BEFORE, score_reveals=1, reveals=3))
    with pytest.raises(ContractRevert):
        agent.step()


def test_a_transaction_dropped_after_the_node_lost_state_makes_the_agent_look_again():
    # A node restarted from an older saved state: the transport drops what can never be mined;
    # the agent goes on and decides again from what the chain now says.
    agent, logs = stepping_into(TransactionDropped("0xabc", 3, 2))
    assert agent.step() == (True, True)
    assert "looking again" in logs[-1]


def test_a_nonce_taken_by_another_use_of_the_key_makes_the_agent_look_again():
    # The operator ran `withdraw` with the agent's key mid-round: the journaled transaction can
    # never be mined. The agent re-reads its nonces (another process used them) and decides
    # again from the chain instead of exiting.
    agent, logs = stepping_into(NonceTaken("0xabc", 3, "0x" + "11" * 20))
    forgot: list[bool] = []
    agent.client.chain = SimpleNamespace(forget_nonces=lambda: forgot.append(True))
    assert agent.step() == (True, True)
    assert "looking again" in logs[-1] and "nonce 3" in logs[-1], logs
    assert forgot == [True]


def test_an_edge_registers_only_after_the_edges_before_it_in_the_plan():
    # So its registration index, which every table and figure shows, is its plan index, which
    # its log file, data folder and the runner's lines show.
    agent = object.__new__(EdgeAgent)
    agent.settings = AgentSettings(stake=10**18, register_after=2)
    waiting = replace(COMMITTING, phase=Phase.REGISTRATION, registered=False, active_edges=1)
    assert agent._next_action(waiting) is None
    assert agent._next_action(replace(waiting, active_edges=2)) == agent._register
    assert agent._next_action(replace(waiting, active_edges=2, registered=True)) is None
