"""The validator's judgement on toy tensors (no model), and the agent's crash-safe state file."""

import pytest
import torch

from edgetune.agent.state import AgentState, CommittedUpdate, CommittedVote, StateFileError
from edgetune.agent.validation import judge_round
from edgetune.contribution import ShapleyConfig
from edgetune.learning import MalformedAdapter, adapter_to_bytes
from edgetune.storage import ContentHashMismatch

TARGET = torch.tensor([1.0, 1.0])
PREVIOUS = {"w.lora_B.weight": torch.zeros(2)}


def metric(adapter) -> float:
    """Closer to TARGET is better: a stand-in for negative validation loss."""
    return -float(((adapter["w.lora_B.weight"] - TARGET) ** 2).sum())


def update(*values: float) -> dict[str, torch.Tensor]:
    return {"w.lora_B.weight": torch.tensor(values)}


def judge(updates, samples, harm_tolerance=0.5):
    def fetch(index):
        item = updates[index]
        if isinstance(item, Exception):
            raise item
        return item

    return judge_round(PREVIOUS, samples, fetch, metric, harm_tolerance, ShapleyConfig())


def test_invalid_updates_are_marked_and_harmful_ones_left_out():
    updates = [
        update(1.0, 1.0),  # helpful
        ContentHashMismatch("bafk", "aa", "bb"),  # bytes do not match the on-chain hash
        MalformedAdapter("wrong shape"),
        update(-20.0, -20.0),  # well formed but destructive
    ]
    verdict = judge(updates, [10, 10, 10, 10])
    assert verdict.valid_mask == 0b1001
    assert verdict.included_mask == 0b0001
    assert set(verdict.rejected) == {1, 2}
    assert verdict.scores[1] == verdict.scores[2] == 0
    assert verdict.scores[0] > 0 > verdict.scores[3]
    assert verdict.approve and verdict.new_metric > verdict.previous_metric
    assert verdict.aggregate_bytes == adapter_to_bytes(update(1.0, 1.0))


def test_no_valid_update_means_no_approval_and_an_unchanged_model():
    verdict = judge([MalformedAdapter("nan")], [5])
    assert (verdict.valid_mask, verdict.included_mask, verdict.approve) == (0, 0, False)
    assert verdict.aggregate_bytes == adapter_to_bytes(PREVIOUS)


def test_aggregate_weights_by_samples_in_reveal_order():
    verdict = judge([update(1.0, 0.0), update(0.0, 1.0)], [3, 1])
    assert verdict.aggregate_bytes == adapter_to_bytes(update(0.75, 0.25))


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
