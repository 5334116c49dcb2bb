"""The across-seed verdict: each target is judged from the seed's own numbers."""

import pytest

from edgetune.casestudy.summary import SeedVerdict, _ranks


def verdict(**change) -> SeedVerdict:
    base = dict(
        seed=0,
        best_alone=0.60,
        collaborative=0.70,
        pooled=0.72,
        rejected_rounds=(),
        noisy_earns_least=True,
    )
    return SeedVerdict(**{**base, **change})


def test_a_seed_that_clears_every_bar_meets_every_target():
    assert all(verdict().met.values())
    assert verdict().margin == pytest.approx(0.10)
    assert verdict().headroom == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("change", "missed"),
    [
        ({"collaborative": 0.649}, {"beats best alone by 0.05", "95% of pooled"}),
        ({"collaborative": 0.68, "pooled": 0.80}, {"95% of pooled"}),
        ({"rejected_rounds": (4,)}, {"every round consensus"}),
        ({"noisy_earns_least": False}, {"noisy hospital earns least"}),
        ({"noisy_earns_least": None}, {"noisy hospital earns least"}),  # nothing to judge by
    ],
)
def test_each_missed_target_is_named(change, missed):
    met = verdict(**change).met
    assert {name for name, ok in met.items() if not ok} == missed


def test_ranks_average_ties():
    assert list(_ranks([3.0, 1.0, 3.0, 2.0])) == [2.5, 0.0, 2.5, 1.0]
