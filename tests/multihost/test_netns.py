"""The federation across hosts: `scripts/multihost run` puts the chain, the content node and
each of 4 edges in its own network namespace, runs 3 rounds, and takes edge 2's link down from
its last duty of round 1 until round 2 has closed a stage without it. From the chain's events
alone, this test recomputes who had to be slashed (and how much) and who is paid what, to the
wei, and checks the edge rejoined round 3 and was paid for it. Skipped, with the reason, where
namespaces cannot be made (not root, no `ip`, or `ip netns add` refused).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from edgetune.chain.types import Phase, ScoreBallot, SlashReason

from .. import conftest as session
from ..agent.federations import RoundEvents, expected_rewards, expected_tally, rewards_of

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "multihost"
TIMEOUT_S = 600  # a loaded 2-core machine; an idle one takes a fraction (docs/multihost.md)
PARTITIONED, PARTITION_ROUND, ROUNDS = 2, 2, 3
# stage committed -> the event that reveals it
REVEALS = {
    Phase.UPDATE_COMMIT: "UpdateRevealed",
    Phase.SCORE_COMMIT: "ScoresRevealed",
    Phase.ATTEST_COMMIT: "AttestationRevealed",
}

pytestmark = [pytest.mark.anvil, pytest.mark.ipfs]


def _topology() -> ModuleType:
    spec = importlib.util.spec_from_file_location("multihost_topology", SCRIPT / "topology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


topology = _topology()


def _require_js_ipfs() -> None:
    """As the session's IPFS fixture: wait for the background install where CI requires IPFS,
    else skip when js-ipfs is absent."""
    if session._install is not None:
        _, errors = session._install.communicate(timeout=900)
        if session._install.returncode != 0:
            session._give_up(f"scripts/ipfs-node install failed: {errors.strip()[-500:]}")
    if not session.JS_BIN.exists():
        session._give_up("no js-ipfs installed (run scripts/ipfs-node install)")


@pytest.fixture
def result(tmp_path: Path) -> dict[str, Any]:
    if reason := topology.check_allowed():
        pytest.skip(reason)
    _require_js_ipfs()
    prefix = f"etmht{os.getpid()}"
    argv = [sys.executable, str(SCRIPT), "run", "--prefix", prefix, "--workdir", str(tmp_path)]
    argv += ["--edges", "4", "--rounds", str(ROUNDS), "--partition-edge", str(PARTITIONED)]
    argv += ["--partition-round", str(PARTITION_ROUND), "--steps", "3", "--tick", "0.5"]
    argv += ["--commit-blocks", "20", "--phase-blocks", "60"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = run.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGTERM)  # its own teardown first
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        subprocess.run([sys.executable, str(SCRIPT), "down", "--prefix", prefix], timeout=120)
    assert not topology.namespaces_with(prefix), "a namespace outlived the run"
    assert run.returncode == 0, output[-3000:]
    return json.loads((tmp_path / "result.json").read_text())


def _events(result: dict[str, Any], name: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(**event) for event in result["events"][name]]


def _round(result: dict[str, Any], finalized: SimpleNamespace) -> RoundEvents:
    r = finalized.round

    def of(name: str) -> list[SimpleNamespace]:
        return [e for e in _events(result, name) if e.round == r]

    tallied = of("RoundTallied")
    return RoundEvents(
        round=r,
        reveals=sorted(of("UpdateRevealed"), key=lambda e: e.index),
        ballots=[
            ScoreBallot.unpack(e.edge, e.validMask, e.copyMask, bytes.fromhex(e.scores[2:]))
            for e in of("ScoresRevealed")
        ],
        tallied=tallied[0] if tallied else None,
        attestations=of("AttestationRevealed"),
        finalized=finalized,
        credits=of("RewardCredited"),
        slashes=of("Slashed"),
    )


def offences(result: dict[str, Any], record: RoundEvents) -> dict[str, set[SlashReason]]:
    """What docs/protocol.md says each edge owes for round `record`: Absent for a commit stage
    the round opened (update always; scores once an update was revealed; attestation once the
    tally included something) that it skipped; NotRevealed for a commitment it never opened."""
    opened = [Phase.UPDATE_COMMIT]
    if record.reveals:
        opened.append(Phase.SCORE_COMMIT)
    if record.tallied is not None and record.tallied.includedMask:
        opened.append(Phase.ATTEST_COMMIT)
    commits = {
        (e.edge, Phase(e.stage)) for e in _events(result, "Committed") if e.round == record.round
    }
    out: dict[str, set[SlashReason]] = defaultdict(set)
    for edge in result["edges"]:
        for stage in opened:
            if (edge, stage) not in commits:
                out[edge].add(SlashReason.ABSENT)
        for stage, reveal in REVEALS.items():
            revealed = {e.edge for e in _events(result, reveal) if e.round == record.round}
            if (edge, stage) in commits and edge not in revealed:
                out[edge].add(SlashReason.NOT_REVEALED)
    return out


def test_four_hosts_three_rounds_with_one_edge_partitioned_for_a_phase(result):
    config, edges = result["config"], result["edges"]
    amount = {
        SlashReason.ABSENT: config["slash_absent"],
        SlashReason.NOT_REVEALED: config["slash_non_reveal"],
    }
    rounds = [_round(result, f) for f in _events(result, "RoundFinalized")]
    assert [r.round for r in rounds] == [1, 2, 3]
    assert all(r.finalized.accepted for r in rounds)

    # The partition was driven by the chain: down after round 1's last duty (the edge's
    # attestation reveal), up once round 2 closed a stage the edge could not do. The round the
    # coordinator saw at "down" is 1, or 2 when round 1 was finalized within one of its polls.
    partition = result["partition"]
    assert partition["error"] is None
    down, up = partition["events"]
    (attested,) = [
        e.block
        for e in _events(result, "AttestationRevealed")
        if e.edge == edges[PARTITIONED] and e.round == 1
    ]
    assert down["link"] == "down" and down["round"] in (1, 2) and down["block"] >= attested
    assert (up["link"], up["round"]) == ("up", 2) and up["block"] > down["block"]
    assert partition["missed"] in ("UPDATE_COMMIT", "UPDATE_REVEAL")

    stake = {e.edge: e.stake for e in _events(result, "EdgeRegistered")}
    paid: dict[int, set[str]] = {}
    for record in rounds:
        owed = offences(result, record)
        expected_slashes = {
            (edge, reason, amount[reason]) for edge, rs in owed.items() for reason in rs
        }
        slashes = {(s.edge, SlashReason(s.reason), s.amount) for s in record.slashes}
        assert slashes == expected_slashes, record.round
        # Stage 1 and the payout recomputed from the ballots and stakes; an edge that missed a
        # stage forfeits its share, which stays in the pool.
        tally = expected_tally(record.ballots, stake, len(record.reveals), config["harm_tolerance"])
        assert list(record.tallied.medians) == tally.medians
        shares = expected_rewards(record, tally, config["validator_share_bps"])
        expected = {key: wei for key, wei in shares.items() if key[0] not in owed}
        assert rewards_of(record) == expected, record.round
        assert sum(c.amount for c in record.credits) == record.finalized.paid > 0
        paid[record.round] = {c.edge for c in record.credits}
        for edge, _reason, wei in slashes:
            stake[edge] -= wei

    cut_off = edges[PARTITIONED]
    assert set(offences(result, rounds[0])) == set() == set(offences(result, rounds[2]))
    assert set(offences(result, rounds[1])) == {cut_off}  # the round went on without it
    assert cut_off not in paid[2] and cut_off in paid[3]  # it rejoined and was paid
    assert paid[2] == set(edges) - {cut_off}
    assert stake[cut_off] >= config["min_stake"]

    # `edgetune rewards`, run on the chain host, says the same.
    rewards = {e["address"]: e for e in result["rewards"]["edges"]}
    for edge in edges:
        credited = sum(c.amount for r in rounds for c in r.credits if c.edge == edge)
        assert rewards[edge]["earned"] == credited
        assert rewards[edge]["stake"] == stake[edge]
        assert rewards[edge]["state"] == "finished"
