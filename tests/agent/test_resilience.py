"""Agents outlive the faults a real deployment has: the chain going away (an RPC outage, a node
killed hard and restarted), the content store going away, a full disk. None of them may cost an
honest edge its stake, and the round completes.

The stepping tests use an agent without chain or model; the federations are three edges of real
(tiny) LoRA training, one round: in one process on the embedded chain for the content outage,
on anvil with one thread per agent (each with its own connection) for the chain faults.
"""

import errno
import os
from dataclasses import replace
from types import SimpleNamespace

import pytest

from edgetune.agent import federation
from edgetune.agent.content import ContentPending
from edgetune.agent.edge import AgentSettings, ChainOutageTooLong, EdgeAgent
from edgetune.agent.federation import FederationConfig
from edgetune.agent.state import AgentState, CommittedUpdate, StateFileError
from edgetune.chain.errors import ChainUnavailable, TransactionPending
from edgetune.chain.types import Phase, RevealedUpdate, Status, Step
from edgetune.learning import TrainConfig
from edgetune.storage import ContentNotFound, StorageUnavailable

from .federations import Chronicle, run_federation

COMMITTING = Status(
    phase=Phase.UPDATE_COMMIT,
    round=1,
    phase_end=100,
    active_edges=3,
    reveals=0,
    score_reveals=0,
    included_mask=0,
    global_hash=bytes(32),
    global_cid="bafkglobal",
    registered=True,
    active=True,
    stake=10**18,
    done=Step(0),
    owed=0,
)
FINISHED = replace(COMMITTING, phase=Phase.FINISHED)


def bare_agent(client, settings: AgentSettings | None = None, state: AgentState | None = None):
    """An EdgeAgent over `client` with no model and no store, logging into a list."""
    logs: list[str] = []
    agent = object.__new__(EdgeAgent)
    agent.client, agent.task_id, agent.state, agent.log = client, 1, state, logs.append
    agent.settings = settings or AgentSettings(stake=10**18, poll_min_s=0.001, poll_max_s=0.01)
    agent.timings, agent.scorecards, agent._failed, agent._waiting = {}, {}, None, None
    return agent, logs


class FlakyChain:
    """A client whose status read fails `outage` times, then says the task is over."""

    def __init__(self, outage: list[Exception]) -> None:
        self.outage = outage
        self.chain = SimpleNamespace(forgotten=0)
        self.chain.forget_nonces = lambda: setattr(
            self.chain, "forgotten", self.chain.forgotten + 1
        )

    def status(self, task_id: int) -> Status:
        if self.outage:
            raise self.outage.pop(0)
        return FINISHED


# ---------------------------------------------------------------------- the chain goes away


def test_the_default_outage_limit_outlasts_a_two_minute_outage():
    assert AgentSettings(stake=1).outage_limit_s >= 600  # the issue asks for >= 10 minutes


def test_an_agent_polls_through_an_outage_with_one_line_when_it_goes_and_one_when_back():
    down = ChainUnavailable("http://127.0.0.1:1", "connection refused (retried for 30 s)")
    pending = TransactionPending("0xabc", 7, 120)
    client = FlakyChain([down, down, pending, down, down])
    settings = AgentSettings(stake=1, poll_min_s=0.001, outage_poll_max_s=0.01)
    agent, logs = bare_agent(client, settings)
    agent.run()  # returns: the task is over once the chain is back
    assert client.outage == []
    assert len(logs) == 2, logs
    assert logs[0].startswith("chain unavailable, waiting up to 600 s") and "refused" in logs[0]
    assert logs[1].startswith("chain is back after")
    assert client.chain.forgotten == 1  # a restarted node may have lost transactions


def test_an_agent_gives_up_after_the_outage_limit_with_one_line():
    down = ChainUnavailable("http://127.0.0.1:1", "connection refused")
    client = FlakyChain([down] * 10_000)
    settings = AgentSettings(stake=1, outage_limit_s=0.2, outage_poll_max_s=0.01)
    agent, logs = bare_agent(client, settings)
    with pytest.raises(ChainOutageTooLong) as gave_up:
        agent.run()
    message = str(gave_up.value)
    assert "\n" not in message and "limit 0.2 s (outage_limit_s)" in message
    assert "connection refused" in message and len(logs) == 1


# ---------------------------------------------------------------------- a full disk


@pytest.mark.parametrize("failing", [".update.tmp", ".json.tmp"])  # the update's bytes, the salt
def test_a_full_disk_stops_the_agent_before_its_commit_is_sent(tmp_path, monkeypatch, failing):
    sent = []
    client = SimpleNamespace(
        status=lambda task_id: COMMITTING,
        commit=lambda *args: sent.append(args),
        chain=SimpleNamespace(chain_id=31337),
        address="0x" + "c0" * 20,
        sender_address="0x" + "ab" * 20,
    )
    state = AgentState(tmp_path / "agent-state.json", client.address, 1, client.sender_address)
    agent, _ = bare_agent(client, state=state)

    def train(status):  # what _train does with the disk: the bytes first, then the record
        state.save_blob(status.round, b"update bytes")
        return CommittedUpdate("aa" * 32, "bafkupdate", "bb" * 32)

    agent._train = train
    real_write = os.write

    def write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(failing):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(StateFileError, match=r"No space left on device$"):
        agent.step()
    assert sent == []  # no commitment whose salt is not on disk
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------- the store goes away


def test_an_unreachable_update_is_judged_unavailable_only_as_the_phase_ends():
    block = [80]
    client = SimpleNamespace(chain=SimpleNamespace(block_number=lambda: block[0]))
    agent, logs = bare_agent(client)
    missing = ContentPending("update 1 bafkb cannot be fetched yet: IPFS node unreachable")
    agent.content = SimpleNamespace(unavailable=lambda round_, revealed: [(1, missing)])
    scoring = replace(COMMITTING, phase=Phase.SCORE_COMMIT, phase_end=100)
    revealed = [RevealedUpdate("0xa", i, bytes(32), f"bafk{i}") for i in range(2)]
    with pytest.raises(ContentPending, match="20 blocks left"):
        agent._wait_for_updates(scoring, revealed)
    block[0] = 97  # the margin: 3 blocks left to score and commit
    agent._wait_for_updates(scoring, revealed)
    assert logs == [f"round 1: phase ending, update 1 unavailable: {missing}"]


class FlakyStore:
    """A content store that, once `watch()`ed, fails the next `outage` reads of anything put
    after that (the updates, published at reveal): unreachable and missing blocks in turn."""

    def __init__(self, store, outage: int) -> None:
        self.store, self.outage = store, outage
        self.watched: set[str] | None = None
        self.failed = 0

    def watch(self) -> None:
        if self.watched is None:
            self.watched = set()

    def put(self, data: bytes) -> str:
        cid = self.store.put(data)
        if self.watched is not None:
            self.watched.add(cid)
        return cid

    def get(self, cid: str) -> bytes:
        if self.watched and cid in self.watched and self.failed < self.outage:
            self.failed += 1
            if self.failed % 2:
                raise StorageUnavailable("IPFS node at /ip4/127.0.0.1/tcp/5001 unreachable")
            raise ContentNotFound(f"block {cid} not found")
        return self.store.get(cid)


def test_a_content_outage_in_the_scoring_phase_costs_no_stake(tmp_path, monkeypatch):
    # 45 failed reads: at 3 agents reading 3 updates each per poll, several polls and blocks of
    # outage; the old agent marked the first unreachable update invalid (or died on the global).
    stores: list[FlakyStore] = []
    real_open = federation.open_store
    monkeypatch.setattr(
        federation,
        "open_store",
        lambda spec: stores.append(FlakyStore(real_open(spec), 45)) or stores[-1],
    )
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if "registered" in line:  # the task is published: what is put from now on are updates
            stores[0].watch()

    config = FederationConfig(
        edges=3,
        rounds=1,
        train=TrainConfig(steps=2),
        validation_per_class=2,
        test_per_class=1,
        workdir=tmp_path,
    )
    result = run_federation(config, log=log)
    assert stores[0].failed == 45
    assert any("cannot be fetched yet" in line for line in lines)
    (record,) = Chronicle(result).rounds
    assert record.slashes == []
    assert [ballot.valid_mask for ballot in record.ballots] == [0b111] * 3
    assert record.finalized.accepted
