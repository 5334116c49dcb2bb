"""The agent's crash-safe state file (the validator's stages are tested in test_validation.py)."""

import errno
import os

import pytest

from edgetune.agent.state import (
    AgentState,
    CommittedAttestation,
    CommittedScores,
    CommittedUpdate,
    StateFileError,
)
from edgetune.chain.types import Attestation, ScoreBallot, update_payload


def test_every_kind_of_commitment_survives_a_new_process(tmp_path):
    path = tmp_path / "agent-state.json"
    state = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    update = CommittedUpdate("aa" * 32, "bafkupdate", "bb" * 32)
    scores = CommittedScores(0b111, 0b100, [5, -2, 0], "cc" * 32)
    attestation = CommittedAttestation("dd" * 32, "bafkaggregate", True, "ee" * 32)
    for record in (update, scores, attestation):
        state.save(2, record)
    state.save_blob(2, b"update bytes")
    reopened = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    assert reopened.get(2, "update") == update
    assert reopened.get(2, "scores") == scores
    assert reopened.get(2, "attestation") == attestation
    assert reopened.get(3, "update") is None and reopened.get(2, "nothing") is None
    assert reopened.blob(2) == b"update bytes" and reopened.blob(3) is None
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left half-done
    # What a reveal opens is what was committed to.
    assert reopened.get(2, "scores").ballot() == ScoreBallot(0b111, 0b100, (5, -2, 0))
    assert update.payload() == update_payload(bytes.fromhex("aa" * 32), "bafkupdate")
    assert attestation.attestation() == Attestation(bytes.fromhex("dd" * 32), "bafkaggregate", True)
    assert scores.payload() == scores.ballot().payload()


def test_a_later_save_keeps_the_earlier_stages_of_the_round(tmp_path):
    path = tmp_path / "agent-state.json"
    state = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    state.save(1, CommittedUpdate("aa" * 32, "bafk", "bb" * 32))
    state.save(1, CommittedScores(1, 0, [3], "cc" * 32))
    state.save(2, CommittedUpdate("11" * 32, "bafk2", "22" * 32))
    reopened = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    assert reopened.get(1, "update").cid == "bafk" and reopened.get(1, "scores").scores == [3]
    assert reopened.get(2, "update").cid == "bafk2" and reopened.get(2, "scores") is None


def test_another_tasks_or_deployments_state_file_is_refused(tmp_path):
    path = tmp_path / "agent-state.json"
    AgentState(path, contract="0xc0", task_id=7, edge="0xabc").save(
        1, CommittedUpdate("aa" * 32, "bafk", "bb" * 32)
    )
    with pytest.raises(StateFileError, match="belongs to contract 0xc0 task 7"):
        AgentState(path, contract="0xc0", task_id=8, edge="0xabc")
    # Task 7 of another deployment: its salts and commitments are not this task's.
    with pytest.raises(StateFileError, match="not contract 0xd1 task 7 edge 0xabc"):
        AgentState(path, contract="0xd1", task_id=7, edge="0xabc")
    with pytest.raises(StateFileError, match="edge 0xdef"):
        AgentState(path, contract="0xc0", task_id=7, edge="0xdef")
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="cannot read agent state"):
        AgentState(path, contract="0xc0", task_id=7, edge="0xabc")


OWNER = '"contract": "0xc0", "task_id": 7, "edge": "0xabc"'
SALT = "bb" * 32


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"[]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (b"\xff\xfe{}", "cannot read agent state"),  # not UTF-8
        ("{" + OWNER + "}", "no rounds"),
        ("{" + OWNER + ', "rounds": []}', "no rounds"),
        ("{" + OWNER + ', "rounds": {"1": []}}', "round 1"),
        ("{" + OWNER + ', "rounds": {"one": {}}}', "round 'one'"),
        ("{" + OWNER + ', "rounds": {"1": {"update": {"cid": "bafk"}}}}', "fields missing"),
        ("{" + OWNER + ', "rounds": {"1": {"update": 5}}}', "expected an object"),
        ("{" + OWNER + ', "rounds": {"1": {"vote": {}}}}', "'vote' is not one of"),
        (
            "{" + OWNER + ', "rounds": {"1": {"update": '
            '{"update_hash": 5, "cid": "bafk", "salt": "' + SALT + '"}}}}',
            "expected str, got 5",
        ),
        (
            "{" + OWNER + ', "rounds": {"1": {"scores": '
            '{"valid_mask": 1, "copy_mask": 0, "scores": ["x"], "salt": "' + SALT + '"}}}}',
            "expected int, got 'x'",
        ),
        (
            "{" + OWNER + ', "rounds": {"1": {"update": '
            '{"update_hash": "zz", "cid": "bafk", "salt": "' + SALT + '"}}}}',
            "update_hash",
        ),
    ],
)
def test_a_malformed_state_file_is_one_error_naming_the_file(tmp_path, content, cause):
    path = tmp_path / "agent-state.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(StateFileError) as raised:
        AgentState(path, contract="0xc0", task_id=7, edge="0xabc").get(1, "update")
    message = str(raised.value)
    assert str(path) in message and cause in message and "\n" not in message, message


def disk_full_for(monkeypatch: pytest.MonkeyPatch, suffix: str = ".tmp") -> None:
    """Every os.write to a file whose name ends in `suffix` fails as on a full disk."""
    real_write = os.write

    def write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_is_one_line_and_leaves_the_last_good_state_and_no_temporary_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "agent-state.json"
    state = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    state.save(1, CommittedUpdate("aa" * 32, "bafk", "bb" * 32))
    disk_full_for(monkeypatch)
    with pytest.raises(StateFileError) as failed:
        state.save(2, CommittedUpdate("11" * 32, "bafk2", "22" * 32))
    assert str(failed.value) == f"cannot write agent state {path}: No space left on device"
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert state.get(2, "update") is None  # what is not on disk is not remembered either
    with pytest.raises(StateFileError, match="No space left on device"):
        state.save_blob(2, b"update bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent-state.json"]
    monkeypatch.undo()
    reopened = AgentState(path, contract="0xc0", task_id=7, edge="0xabc")
    assert reopened.get(1, "update").cid == "bafk" and reopened.get(2, "update") is None


def test_an_unwritable_folder_is_a_state_file_error_too(tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "open", refuse)
    state = AgentState(tmp_path / "agent-state.json", contract="0xc0", task_id=7, edge="0xabc")
    with pytest.raises(StateFileError, match="Permission denied"):
        state.save(1, CommittedUpdate("aa" * 32, "bafk", "bb" * 32))
