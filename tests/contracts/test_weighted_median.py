"""WeightedMedian (through contracts/test/WeightedMedianHarness.sol): the lower stake-weighted
median, checked against a Python reference on random inputs (duplicates, all-equal scores,
zero weights, int32 extremes), and its gas: linear on constant, sorted and reversed inputs,
which a naive quickselect turns quadratic."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetune.chain.connect import send

from .rounds import deploy_helper, lower_weighted_median

INT32 = st.integers(-(2**31), 2**31 - 1)
WEIGHT = st.one_of(st.just(0), st.integers(1, 10**18), st.integers(1, 2**128 - 1))


@pytest.fixture
def harness_contract(harness):
    return deploy_helper(harness.chain, "WeightedMedianHarness")


@pytest.mark.parametrize(
    ("scores", "weights", "expected"),
    [
        ([3, 1, 2], [1, 1, 1], 2),  # odd count
        ([4, 1, 3, 2], [1, 1, 1, 1], 2),  # even count: the lower median
        ([5, 5, 1, 9], [1, 1, 1, 1], 5),  # ties
        ([1, 100, 50], [10, 1, 1], 1),  # a heavy stake outweighs two light ones
        ([-3, -1, -2], [1, 1, 5], -2),  # negative scores order correctly
        ([-(2**31), 2**31 - 1], [1, 2], 2**31 - 1),  # int32 extremes
        ([-(2**31), 2**31 - 1], [1, 1], -(2**31)),
        ([1, 5], [0, 1], 5),  # a zero weight never decides
        ([7, 8], [0, 0], 0),  # no weight: no median
        ([], [], 0),
        ([42] * 9, [3] * 9, 42),  # all equal
        ([9], [2**128 - 1], 9),  # the largest weight
    ],
)
def test_weighted_median_cases(harness_contract, scores, weights, expected):
    assert lower_weighted_median(list(zip(scores, weights, strict=True))) == expected
    assert harness_contract.functions.lowerMedian(scores, weights).call() == expected


pairs = st.one_of(
    st.lists(st.tuples(INT32, WEIGHT), max_size=40),
    st.lists(st.tuples(st.integers(-3, 3), WEIGHT), max_size=40),  # many duplicates
    st.tuples(INT32, st.lists(WEIGHT, max_size=40)).map(lambda t: [(t[0], w) for w in t[1]]),
)


def test_weighted_median_matches_the_reference(harness_contract):
    median = harness_contract.functions.lowerMedian

    @settings(
        max_examples=250, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(pairs)
    def check(pairs: list[tuple[int, int]]) -> None:
        scores, weights = [s for s, _ in pairs], [w for _, w in pairs]
        assert median(scores, weights).call() == lower_weighted_median(pairs)

    check()


def _execution_gas(chain, fn) -> int:
    """gasUsed of a real transaction minus its intrinsic and calldata cost, so inputs with more
    zero bytes (constant scores) are not favoured by cheaper calldata."""
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    intrinsic = 21_000 + sum(4 if byte == 0 else 16 for byte in data)
    return send(chain, fn, chain.accounts[0], gas=10_000_000)["gasUsed"] - intrinsic


def test_weighted_median_gas_stays_linear_on_constant_sorted_and_reversed_input(
    harness, harness_contract
):
    """Mean gas over 6 score sets: the pivots are drawn from a hash of the input, so one input's
    gas is one draw (a pass can be unlucky); the mean shows the order of growth."""
    median = harness_contract.functions.lowerMedian
    rng = random.Random(0)
    gas: dict[tuple[str, int], float] = {}
    for n in (32, 64):
        for _ in range(6):
            weights = [rng.randrange(1, 10**18) for _ in range(n)]
            scores = [rng.randrange(-(10**6), 10**6) for _ in range(n)]
            inputs = {
                "random": scores,
                "constant": [250_000] * n,
                "sorted": sorted(scores),
                "reversed": sorted(scores, reverse=True),
            }
            for name, values in inputs.items():
                used = _execution_gas(harness.chain, median(values, weights))
                gas[(name, n)] = gas.get((name, n), 0) + used / 6
    print({f"{k}/{n}": round(v) for (k, n), v in gas.items()})
    for name in ("constant", "sorted", "reversed"):
        assert gas[(name, 64)] < 2 * gas[("random", 64)], name
        assert gas[(name, 64)] < 2.4 * gas[(name, 32)], name  # doubling n: about double gas
