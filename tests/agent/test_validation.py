"""The validator's two stages on toy tensors and a synthetic metric (no model, no chain)."""

import math

import pytest
import torch

from edgetune.agent.validation import AttestationError, attest_round, score_round
from edgetune.contribution import COPY_THRESHOLD, CopyThresholdError, ShapleyConfig, to_fixed
from edgetune.learning import MalformedAdapter, adapter_to_bytes, aggregate
from edgetune.storage import ContentHashMismatch

KEY = "w.lora_B.weight"
TARGET = torch.tensor([1.0, 1.0, 0.0])
PREVIOUS = {"w.lora_A.weight": torch.ones(3), KEY: torch.zeros(3)}


def metric(adapter) -> float:
    """Closer to TARGET is better: a stand-in for negative validation loss."""
    return -float(((adapter[KEY] - TARGET) ** 2).sum())


def update(*values: float) -> dict[str, torch.Tensor]:
    return {KEY: torch.tensor(values)}


def score(updates, config=None, **kwargs):
    def fetch(index):
        item = updates[index]
        if isinstance(item, Exception):
            raise item
        return item

    return score_round(PREVIOUS, len(updates), fetch, metric, config or ShapleyConfig(), **kwargs)


def test_invalid_updates_clear_their_bit_and_say_why():
    card = score(
        [
            update(3.0, 3.0, 0.0),
            ContentHashMismatch("bafk", "aa", "bb"),  # bytes do not match the on-chain hash
            MalformedAdapter("adapter tensor w contains NaN or Inf"),
            {KEY: torch.zeros(2)},  # a lax fetch let a wrong shape through
            update(-6.0, -6.0, 0.0),  # well formed but destructive: valid, scored negative
        ]
    )
    assert card.valid_mask == 0b10001
    assert set(card.rejected) == {1, 2, 3}
    assert "NaN" in card.rejected[2] and "shape" in card.rejected[3]
    assert card.scores[1] == card.scores[2] == card.scores[3] == 0
    assert card.scores[0] > 0 > card.scores[4]
    assert sorted(card.updates) == [0, 4]
    assert sorted(card.shapley.values) == [0, 4]


def test_scores_are_shapley_values_normalised_over_the_valid_set():
    card = score([update(3.0, 3.0, 0.0), MalformedAdapter("bad"), update(1.0, 1.0, 0.0)])
    # V = {0, 2}: each change is weighted 1/|V| = 1/2 in every coalition.
    v0 = metric({KEY: torch.tensor([1.5, 1.5, 0.0])}) - metric(PREVIOUS)
    v2 = metric({KEY: torch.tensor([0.5, 0.5, 0.0])}) - metric(PREVIOUS)
    v02 = metric({KEY: torch.tensor([2.0, 2.0, 0.0])}) - metric(PREVIOUS)
    assert card.shapley.values[0] == pytest.approx((v0 + v02 - v2) / 2)
    assert card.shapley.values[2] == pytest.approx((v2 + v02 - v0) / 2)
    assert card.scores == [to_fixed(card.shapley.values[0]), 0, to_fixed(card.shapley.values[2])]
    assert math.fsum(card.shapley.values.values()) == pytest.approx(v02)


def test_a_near_copy_is_flagged_unscored_and_left_out_of_the_valid_set():
    original = update(2.0, 0.5, -1.0)
    copy = update(2.0 * (1 + COPY_THRESHOLD / 4), 0.5, -1.0)
    far = update(2.0 * (1 + 4 * COPY_THRESHOLD), 0.5, -1.0)
    card = score([original, update(0.5, 1.0, 0.0), copy, far])
    assert card.valid_mask == 0b1111
    assert card.copy_mask == 0b0100
    assert card.scores[2] == 0 and card.scores[3] != 0
    assert sorted(card.shapley.values) == [0, 1, 3]  # the copy is no player
    assert 2 in card.updates  # still kept: the chain may include it in stage 2
    alone = score([original, update(0.5, 1.0, 0.0), far]).shapley.values
    # Same V, same weights, same utility: the copy's presence changes no score.
    assert [alone[i] for i in (0, 1, 2)] == [card.shapley.values[i] for i in (0, 1, 3)]


def test_the_earlier_reveal_is_the_original():
    card = score([update(1.01, 1.0, 1.0), update(1.0, 1.0, 1.0)], copy_threshold=0.05)
    assert card.copy_mask == 0b10
    assert card.scores[0] > 0 and card.scores[1] == 0


def test_copies_are_matched_against_originals_only():
    # 1 is within 0.04 of 0 (a copy); 2 is within 0.04 of 1 but 0.08 from 0: not a copy.
    chain = [update(1.0, 0.0, 0.0), update(1.04, 0.0, 0.0), update(1.08, 0.0, 0.0)]
    assert score(chain, copy_threshold=0.05).copy_mask == 0b010


def test_a_zero_update_scores_exactly_zero_and_a_second_one_is_its_copy():
    zero = {KEY: PREVIOUS[KEY].clone()}
    card = score([update(3.0, 3.0, 0.0), zero, update(0.2, 0.9, 0.0), zero])
    assert card.copy_mask == 0b1000  # zero after zero is a copy; zero after nonzero is not
    assert card.shapley.values[1] == 0.0 and card.scores[1] == 0
    assert card.shapley.values[0] != 0.0 and card.shapley.values[2] != 0.0


def test_zero_update_is_exactly_null_under_the_sampler_too():
    zero = {KEY: PREVIOUS[KEY].clone()}
    ups = [update(0.3 * i, 1.0 - 0.1 * i, 0.05 * i) for i in range(1, 10)]
    config = ShapleyConfig(exact_max_players=4, max_permutations=30)
    card = score([*ups[:4], zero, *ups[4:]], config)
    assert card.shapley.method == "monte_carlo"
    assert card.shapley.values[4] == 0.0 and card.scores[4] == 0


def test_no_valid_update_gives_no_scores_and_no_metric_call():
    def refusing(adapter):
        raise AssertionError("nothing to score: the metric must not run")

    def fetch(index):
        raise MalformedAdapter(f"update {index} does not parse")

    card = score_round(PREVIOUS, 2, fetch, refusing, ShapleyConfig())
    assert (card.valid_mask, card.copy_mask, card.scores, card.shapley) == (0, 0, [0, 0], None)


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), True])
def test_copy_threshold_must_be_in_zero_one(bad):
    with pytest.raises(CopyThresholdError, match="copy_threshold"):
        score([update(1.0, 0.0, 0.0)], copy_threshold=bad)


def test_attest_aggregates_exactly_the_included_updates_in_reveal_order():
    g = torch.Generator().manual_seed(0)
    previous = {"w.lora_A.weight": torch.ones(3), KEY: torch.randn(3, generator=g)}
    first, second, third = ({KEY: torch.randn(3, generator=g) * 10**i} for i in range(3))
    held = {0: first, 1: second, 2: update(9.0, 9.0, 9.0), 3: third}
    in_order = adapter_to_bytes(aggregate(previous, [first, second, third]))
    # Premise: these floats do not sum associatively, so the order is visible in the bytes.
    assert in_order != adapter_to_bytes(aggregate(previous, [third, first, second]))
    attestation = attest_round(previous, held, [3, 0, 1], metric, harm_tolerance=10.0)
    assert attestation.aggregate_bytes == in_order  # 2 is held but not included
    assert attestation.previous_metric == metric(previous)
    assert attestation.new_metric == metric(aggregate(previous, [first, second, third]))


def test_attest_uses_the_scorecards_updates_copies_included():
    ups = [update(2.0, 0.5, -1.0), update(2.0, 0.5, -1.0 + 1e-4), update(0.5, 1.0, 0.0)]
    card = score(ups)
    assert card.copy_mask == 0b010
    attestation = attest_round(PREVIOUS, card.updates, [0, 1, 2], metric, 1.0)
    assert attestation.aggregate_bytes == adapter_to_bytes(aggregate(PREVIOUS, ups))


@pytest.mark.parametrize(
    ("tolerance", "approve"),
    [(2.25, True), (2.2499999, False), (5.0, True)],  # approved exactly at the threshold
)
def test_approve_at_the_harm_threshold(tolerance, approve):
    # G(r-1) scores -2; G(r) = (0, 0, 1.5) scores -4.25: it harms by exactly 2.25.
    attestation = attest_round(PREVIOUS, {0: update(0.0, 0.0, 1.5)}, [0], metric, tolerance)
    assert attestation.new_metric == -4.25 and attestation.previous_metric == -2.0
    assert attestation.approve is approve


def test_an_empty_included_set_is_never_approved_and_keeps_the_previous_global():
    attestation = attest_round(PREVIOUS, {0: update(1.0, 1.0, 0.0)}, [], metric, 100.0)
    assert not attestation.approve
    assert attestation.aggregate_bytes == adapter_to_bytes(PREVIOUS)
    assert attestation.new_metric == attestation.previous_metric


def test_an_included_update_this_validator_does_not_hold_is_an_error():
    with pytest.raises(AttestationError, match=r"\[2\]"):
        attest_round(PREVIOUS, {0: update(1.0, 1.0, 0.0)}, [0, 2], metric, 1.0)
    with pytest.raises(AttestationError, match="repeats"):
        attest_round(PREVIOUS, {0: update(1.0, 1.0, 0.0)}, [0, 0], metric, 1.0)
