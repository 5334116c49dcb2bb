"""chain/reverts.py mirrors the contract's custom errors one to one, and a real revert raises the
class named after its error (so callers catch `EdgeTuneWrongPhase`, not a string)."""

from dataclasses import replace

import pytest

from edgetune.chain.compiler import load_artifact
from edgetune.chain.connect import connect
from edgetune.chain.deploy import deploy
from edgetune.chain.errors import ChainError, InvalidArgument, TransactionReverted
from edgetune.chain.reverts import RACES, ContractRevert, revert_classes
from edgetune.chain.types import Phase

from ..contracts.rounds import BASE_CONFIG, ETHER, bytes32, raw_config

ABI_ERRORS = sorted(e["name"] for e in load_artifact("EdgeTune").abi if e["type"] == "error")


def test_every_contract_error_has_its_class_and_nothing_else_does():
    classes = revert_classes()
    assert ABI_ERRORS, "the EdgeTune ABI declares no errors"
    assert sorted(classes) == ABI_ERRORS
    for name, cls in classes.items():
        assert cls.__name__ == name
        assert issubclass(cls, ContractRevert) and issubclass(cls, TransactionReverted)
        assert issubclass(cls, ChainError)
        assert cls.__doc__, f"{name} has no docstring"
    assert all(cls in classes.values() for cls in RACES)


@pytest.fixture(scope="module")
def client():
    chain = connect("embedded")
    edge_tune, _ = deploy(chain, chain.accounts[0])
    return edge_tune


def _raised(action) -> ContractRevert:
    with pytest.raises(ContractRevert) as caught:
        action()
    return caught.value


def test_real_reverts_raise_their_own_class(client):
    stranger = client.as_sender(client.chain.accounts[1])
    task_id, _ = client.create_task(BASE_CONFIG, ETHER)
    cases = [
        ("EdgeTuneUnknownTask", lambda: client.start(99), {"taskId": 99}),
        ("EdgeTuneNotTaskOwner", lambda: stranger.cancel(task_id),
         {"taskId": task_id, "caller": stranger.sender_address}),
        ("EdgeTuneWrongPhase", lambda: client.finalize(task_id),
         {"taskId": task_id, "current": Phase.REGISTRATION, "required": Phase.FINALIZABLE}),
        ("EdgeTuneStakeTooLow", lambda: stranger.register(task_id, 1),
         {"taskId": task_id, "stake": 1, "minStake": BASE_CONFIG.min_stake}),
        ("EdgeTuneNothingToWithdraw", stranger.withdraw, {"account": stranger.sender_address}),
        ("EdgeTuneNotCommitPhase", lambda: stranger.commit(task_id, 1, Phase.TALLY, b"\1" * 32),
         {"given": Phase.TALLY}),
        ("EdgeTuneInvalidConfig",
         lambda: client._send(client.contract.functions.createTask(raw_config(rounds=0), []), 1),
         {"field": bytes32("rounds"), "value": 0}),
    ]  # fmt: skip
    classes = revert_classes()
    for name, action, values in cases:
        error = _raised(action)
        assert isinstance(error, classes[name]), (name, type(error))
        assert type(error) is classes[name]
        assert error.error == name and error.values == values
    wrong_phase = _raised(lambda: client.finalize(task_id))
    assert isinstance(wrong_phase, RACES)  # an agent re-reads the chain on these
    assert str(wrong_phase) == (
        f"EdgeTuneWrongPhase(taskId={task_id}, current=REGISTRATION, required=FINALIZABLE)"
    )
    config = _raised(
        lambda: client._send(client.contract.functions.createTask(raw_config(rounds=0), []), 1)
    )
    assert str(config) == "EdgeTuneInvalidConfig(field=rounds, value=0)"


def test_a_value_that_does_not_fit_its_abi_type_is_one_line_and_sends_nothing(client):
    chain = client.chain
    before = (chain.block_number(), chain.w3.eth.get_transaction_count(client.sender_address))
    cases = [
        (lambda: client.register(-1, 1), "register: taskId -1 does not fit uint256"),
        (lambda: client.release_stake(-1), "releaseStake: taskId -1 does not fit uint256"),
        (lambda: client.status(2**256), "status: taskId"),
        (lambda: client.create_task(replace(BASE_CONFIG, min_stake=10**60), ETHER),
         f"createTask: config.minStake {10**60} does not fit uint128"),
    ]  # fmt: skip
    for action, expected in cases:
        with pytest.raises(InvalidArgument) as caught:
            action()
        assert expected in str(caught.value) and "\n" not in str(caught.value), caught.value
    after = (chain.block_number(), chain.w3.eth.get_transaction_count(client.sender_address))
    assert after == before
