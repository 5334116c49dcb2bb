"""The agent's crash-safe state file (the validator's stages are tested in test_validation.py)."""

import pytest

from edgetune.agent.state import AgentState, CommittedUpdate, CommittedVote, StateFileError


def test_state_survives_a_new_process_and_refuses_another_deployments_file(tmp_path):
    path = tmp_path / "agent-state.json"
    state = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    committed = CommittedUpdate("aa" * 32, "bafk", 12, "bb" * 32)
    vote = CommittedVote(3, 1, "cc" * 32, "bafy", True, [5, -2], "dd" * 32)
    state.save_update(2, committed)
    state.save_vote(2, vote)
    reopened = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    assert reopened.update(2) == committed and reopened.vote(2) == vote
    assert reopened.update(3) is None
    assert reopened.vote(2).ballot().scores == (5, -2)
    assert not path.with_suffix(".tmp").exists()
    with pytest.raises(StateFileError, match="belongs to contract 0xc0 task 7"):
        AgentState(path, contract="0xc0", task_id=8, edge="0xabc")
    # Task 7 of another deployment: its salts and votes are not this task's.
    with pytest.raises(StateFileError, match="not contract 0xd1 task 7 edge 0xabc"):
        AgentState(path, contract="0xd1", task_id=7, edge="0xabc")
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="cannot read agent state"):
        AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
