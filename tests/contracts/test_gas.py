"""At the largest task (64 edges, every update paid, every validator paid, fresh accounts), no
keeper transaction of a round exceeds 5,000,000 gas (1/6 of a 30M block): `tally` and
`finalize` are the two whose gas grows with the edges. Runs bench/bench_gas.py's own scenario on
anvil (on the embedded chain the 450 transactions take over a minute)."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.anvil

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_gas.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gas", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gas", module)
    spec.loader.exec_module(module)
    return module


def test_tally_and_finalize_at_64_edges_stay_under_5m_gas():
    bench = _bench()
    with bench.bench_chain("anvil") as chain:
        (row,), _ = bench.measure(chain, sizes=[64], lifecycle=False)
    (tally,), (finalize,) = row.log.calls["tally"], row.log.calls["finalize"]
    print(f"64 edges: tally {tally:,} gas, finalize {finalize:,} gas")
    assert tally < bench.LARGEST_TX_TARGET
    assert finalize < bench.LARGEST_TX_TARGET
    label, largest = row.log.largest()
    assert largest < bench.LARGEST_TX_TARGET, label
