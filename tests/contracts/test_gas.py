"""At the largest task (256 edges, every update paid, every validator paid, fresh accounts), no
transaction of a round exceeds 15,000,000 gas (half a 30M block): `tally` goes in parts of 32
updates and `finalize` in batches of 64 edges, and together they fix exactly the medians,
agreements and credits an independent recomputation gives. Runs bench/bench_gas.py's own
scenario on anvil (on the embedded chain its ~2,300 transactions take several minutes)."""

import importlib.util
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edgetune.chain.deploy import deploy
from edgetune.chain.types import Phase, RewardKind
from tests.contracts.rounds import expect_revert, expected_credits, expected_tally

pytestmark = pytest.mark.anvil

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_gas.py"
EDGES = 256
ETHER = 10**18


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gas", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gas", module)
    spec.loader.exec_module(module)
    return module


def test_256_edges_settle_in_bounded_calls_and_pay_what_a_recomputation_says():
    bench = _bench()
    with bench.bench_chain("anvil") as chain:
        owner, _ = deploy(chain, chain.accounts[0])
        play, log = bench.Bench(chain, owner, []), bench.GasLog()
        edges = bench.funded_edges(chain, owner, EDGES, "test-")
        task_id = play.task(log, edges, rounds=2, pool=2 * ETHER)
        # Update 40 (part 1) judged invalid by everyone, update 200 (part 6) a copy.
        salts = play.play_scores(log, task_id, 1, edges, random.Random(0), 1 << 40, 1 << 200)
        ballots = owner.score_ballots(task_id, 1)

        # Parts go in order, each checked against its own digest.
        with expect_revert("EdgeTuneWrongTallyPart", taskId=task_id, round=1, given=1, expected=0):
            owner.tally(task_id, 1, ballots, 1)
        play.tally(log, task_id, 1, parts=1)
        with expect_revert("EdgeTuneWrongTallyPart", taskId=task_id, round=1, given=0, expected=1):
            owner.tally(task_id, 1, ballots, 0)
        shifted = [replace(b, scores=b.scores[32:]) for b in ballots]  # part 2's scores as 1's
        with expect_revert("EdgeTuneBallotsMismatch", taskId=task_id, round=1):
            owner.tally(task_id, 1, shifted, 1)
        assert owner.status(task_id).tallied_parts == 1
        play.tally(log, task_id, 1, parts=8, first=1)
        play.attest(log, task_id, 1, edges, salts)

        # Settlement: 64 edges a call; the round stays finalizable until the last batch.
        for settled in (64, 128, 192):
            receipt = play.finalize(log, task_id)
            (progress,) = owner.receipt_events(receipt, "RoundSettling")
            assert (progress.settledEdges, progress.edges) == (settled, EDGES)
            status = owner.status(task_id)
            assert (status.phase, status.round, status.settled_edges) == (
                Phase.FINALIZABLE, 1, settled,
            )  # fmt: skip
        # Halfway through settlement, funds are still conserved.
        held = sum(owner.stake_of(task_id, e.sender_address) + owner.owed(e.sender_address)
                   for e in edges)  # fmt: skip
        assert chain.w3.eth.get_balance(owner.address) == held + owner.task_funds(task_id).pool
        (finalized,) = owner.receipt_events(play.finalize(log, task_id), "RoundFinalized")
        assert owner.status(task_id).round == 2

        (tallied,) = owner.round_events(task_id, 1, "RoundTallied")
        credits = owner.round_events(task_id, 1, "RewardCredited")
        authors = [e.edge for e in owner.round_events(task_id, 1, "UpdateRevealed")]
        slashes = owner.round_events(task_id, 1, "Slashed")

    print(f"{EDGES} edges: tally parts {log.calls['tally']}, finalize {log.calls['finalize']}")
    assert len(log.calls["tally"]) == 8 and len(log.calls["finalize"]) == 4
    label, largest = log.largest()
    assert largest < bench.LARGEST_TX_TARGET, label

    stakes = [ETHER + i * 10**15 for i in range(EDGES)]
    by_address = {e.sender_address: s for e, s in zip(edges, stakes, strict=True)}
    want = expected_tally([by_address[b.scorer] for b in ballots], ballots, EDGES)
    assert tuple(tallied.medians) == want.medians
    assert tuple(tallied.agreements) == want.agreements
    assert (tallied.validMask, tallied.copyMask, tallied.includedMask) == (
        want.valid, want.copies, want.included,
    )  # fmt: skip
    assert want.valid == (1 << EDGES) - 1 - (1 << 40) and want.included & (1 << 200) == 0

    approvers = {b.scorer: a for b, a in zip(ballots, want.agreements, strict=True)}
    expected = expected_credits(ETHER, authors, want, approvers)
    got = {(c.edge, RewardKind(c.kind)): c.amount for c in credits}
    assert got == expected
    assert finalized.paid == sum(expected.values()) and finalized.budget == ETHER
    (slashed,) = slashes
    assert (slashed.edge, slashed.reason, slashed.amount) == (authors[40], 2, ETHER)  # invalid
