"""Several senders' transactions estimated before any is mined, landing in one anvil block (automine
off): the worst case the gas margin must cover, and the race whose revert must still name its
custom error.

Each transaction's gas is estimated up front, on the state before the block, exactly as agents
acting in the same block estimate; then all are broadcast and one block mines them together."""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, send
from edgetune.chain.deploy import deploy
from edgetune.chain.errors import TransactionReverted
from edgetune.chain.transport import GAS_HEADROOM, gas_limit
from edgetune.chain.types import Phase, update_payload

from ..anvil import local_anvil
from ..contracts.rounds import ETHER, TaskHarness, h, update_of

pytestmark = pytest.mark.anvil

EDGES = 4


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chain, EdgeTuneClient]]:
    with local_anvil(tmp_path_factory.mktemp("anvil")) as chain:
        owner, _ = deploy(chain, chain.accounts[0])
        yield chain, owner


def in_one_block(chain: Chain, fn_of: dict[LocalAccount, object], value: int = 0) -> list:
    """Estimate every call first, then send them all and mine them in one block; the receipt or
    the exception of each, in `fn_of`'s order."""
    estimates = {a: fn.estimate_gas({"from": a.address, "value": value}) for a, fn in fn_of.items()}
    chain._rpc("evm_setAutomine", [False])
    try:
        with ThreadPoolExecutor(len(fn_of)) as pool:
            futures: list[Future[TxReceipt]] = [
                pool.submit(send, chain, fn, a, value=value, gas=gas_limit(estimates[a]))
                for a, fn in fn_of.items()
            ]
            wait_for(lambda: pending_count(chain) == len(fn_of) or any(f.done() for f in futures))
            chain.mine()
            outcomes = [f.exception() or f.result() for f in futures]
    finally:
        chain._rpc("evm_setAutomine", [True])
    receipts = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len({r["blockNumber"] for r in receipts}) <= 1, "not all in one block"
    return [(estimates[a], o) for a, o in zip(fn_of, outcomes, strict=True)]


def pending_count(chain: Chain) -> int:
    return int(chain._rpc("txpool_status", [])["pending"], 16)


def wait_for(condition: Callable[[], bool], deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0.02)


def test_race_in_one_block_names_the_custom_error_of_the_loser(deployed) -> None:
    chain, owner = deployed
    harness = TaskHarness(chain, owner)
    task_id = harness.create(max_edges=2)
    racers = chain.accounts[1:4]  # three edges for two slots, all estimated on an empty task
    fns = {a: owner.contract.functions.register(task_id) for a in racers}
    outcomes = in_one_block(chain, fns, value=ETHER)
    lost = [o for _, o in outcomes if isinstance(o, BaseException)]
    assert len(lost) == 1 and isinstance(lost[0], TransactionReverted), outcomes
    assert lost[0].tx_hash is not None  # mined, and reverted on chain
    assert lost[0].error == "EdgeTuneTaskFull" and lost[0].values["maxEdges"] == 2
    assert len(owner.edges_of(task_id)) == 2


def test_gas_margin_covers_the_transaction_that_closes_its_stage_in_a_shared_block(
    deployed, capsys
) -> None:
    chain, owner = deployed
    harness = TaskHarness(chain, owner)
    edges = harness.edges(EDGES)
    task_id = harness.create(max_edges=EDGES)
    contract = owner.contract.functions
    registers = {e.sender: contract.register(task_id) for e in edges}
    figures = {"register": excess_of(in_one_block(chain, registers, value=ETHER))}
    owner.start(task_id)
    salts = {e.sender: h(f"salt/{e.sender_address}") for e in edges}
    updates = {e.sender: update_of(task_id, 1, e) for e in edges}
    commits = {
        e.sender: contract.commit(
            task_id,
            1,
            int(Phase.UPDATE_COMMIT),
            harness.commitment_of(
                task_id,
                1,
                Phase.UPDATE_COMMIT,
                e.sender_address,
                update_payload(*updates[e.sender]),
                salts[e.sender],
            ),
        )
        for e in edges
    }
    figures["commit"] = excess_of(in_one_block(chain, commits))
    assert owner.phase(task_id) == Phase.UPDATE_REVEAL  # the last commit closed the stage
    reveals = {
        a: contract.revealUpdate(task_id, 1, *updates[a], salts[a])
        for a in (e.sender for e in edges)
    }
    figures["revealUpdate"] = excess_of(in_one_block(chain, reveals))
    assert owner.phase(task_id) == Phase.SCORE_COMMIT  # the last reveal closed that one
    with capsys.disabled():
        for name, (estimate, extra) in figures.items():
            print(f"\n{name}: estimate {estimate:,} gas, the worst one used {extra:,} more")
    # The close is a fixed cost, so the fixed headroom alone must cover it: 1.2x of a small
    # estimate would not.
    assert max(extra for _, extra in figures.values()) <= GAS_HEADROOM


def excess_of(outcomes: list) -> tuple[int, int]:
    """(estimate, gas used beyond it) of the transaction that went furthest over its estimate;
    every one must have succeeded."""
    for _, outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcome
        assert outcome["status"] == 1
    return max(((e, r["gasUsed"] - e) for e, r in outcomes), key=lambda pair: pair[1])
