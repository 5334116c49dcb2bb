"""Label-skew remedies: FedAvgM's server step, FedProx's proximal term, the restricted softmax."""

from dataclasses import replace

import torch

from edgetune.learning import (
    Example,
    TrainConfig,
    adapter_to_bytes,
    aggregate,
    initial_global_adapter,
    train_update,
)
from edgetune.learning.aggregate import adam_aggregate, momentum_aggregate
from edgetune.learning.restricted import (
    RestrictedSoftmax,
    divergence_offsets,
    lacking_answer_ids,
)
from edgetune.learning.train import IGNORE, collate, encode_pair, proximal_term

A, B = "m.lora_A.weight", "m.lora_B.weight"


def _adapter(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {A: torch.ones(4, 8), B: torch.randn(16, 4, generator=g)}


def test_momentum_adds_beta_times_the_last_global_step_to_the_average() -> None:
    before, previous = _adapter(0), _adapter(1)
    updates = [{B: _adapter(s)[B]} for s in (2, 3, 4)]
    moved = momentum_aggregate(previous, before, updates, beta=0.5)
    plain = aggregate(previous, updates)
    expected = plain[B].double() + 0.5 * (previous[B].double() - before[B].double())
    assert torch.allclose(moved[B].double(), expected, atol=1e-6)
    assert torch.equal(moved[A], previous[A])
    again = momentum_aggregate(previous, before, updates, beta=0.5)
    assert adapter_to_bytes(again) == adapter_to_bytes(moved)


def test_momentum_without_history_or_beta_is_plain_fedavg_bit_for_bit() -> None:
    previous, updates = _adapter(1), [{B: _adapter(2)[B]}]
    plain = adapter_to_bytes(aggregate(previous, updates))
    assert adapter_to_bytes(momentum_aggregate(previous, None, updates, 0.9)) == plain
    assert adapter_to_bytes(momentum_aggregate(previous, _adapter(0), updates, 0.0)) == plain


def test_fedadam_first_step_is_about_lr_per_coordinate_and_state_carries_on() -> None:
    previous = {A: torch.ones(4, 8), B: torch.zeros(16, 4)}
    updates = [{B: _adapter(s)[B] * 100} for s in (2, 3)]
    sign = torch.sign(aggregate(previous, updates)[B])
    first, state = adam_aggregate(previous, updates, None, lr=0.01)
    assert torch.allclose(first[B], 0.01 * sign, rtol=2e-2) and torch.equal(first[A], previous[A])
    again, _ = adam_aggregate(previous, updates, None, lr=0.01)
    assert adapter_to_bytes(again) == adapter_to_bytes(first)
    # a second round with no change: the first moment decays (0.9) while v barely does (0.99)
    second, _ = adam_aggregate(first, [{B: first[B]}], state, lr=0.01)
    step = (second[B] - first[B]) / (0.01 * sign)
    assert torch.allclose(step, torch.full_like(step, 0.9 * 0.1 / (0.99**0.5 * 0.1)), rtol=2e-2)


def test_proximal_term_is_half_mu_squared_distance() -> None:
    w, anchor = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])], [torch.zeros(2), torch.ones(1)]
    assert proximal_term(w, anchor, 0.5).item() == 0.25 * (1 + 4 + 4)
    assert proximal_term(anchor, anchor, 10.0).item() == 0.0


def _examples() -> list[Example]:
    return [Example(f"patient: case {i}.\ntriage:", " flu") for i in range(16)]


def test_a_strong_proximal_term_keeps_the_update_near_the_global(adapted) -> None:
    g0 = initial_global_adapter(adapted)
    config = TrainConfig(steps=20, batch_size=8, lr=3e-2)

    def moved(config: TrainConfig) -> float:
        update = train_update(adapted, g0, _examples(), config).tensors
        return sum(float((update[k] - g0[k]).norm()) for k in update)

    assert moved(replace(config, prox_mu=1e3)) < 0.5 * moved(config)


def test_divergence_offsets_name_the_lacking_answers_next_token_after_the_shared_prefix() -> None:
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6, 7, 2], [IGNORE, 5, 9, 2, IGNORE, IGNORE]])
    # row 0 answers 5 6 7; lacking 5 6 8 parts at its third token (label position 4, logit 3),
    # lacking 4 at its first (position 2, logit 1); row 1 answers 5 9: parts from 5 6 8 at 9.
    places = divergence_offsets(labels, [(5, 6, 8), (4,)])
    assert places == [(0, 1, 4), (0, 3, 8), (1, 0, 4), (1, 1, 6)]


def test_restricted_softmax_drops_the_lacking_token_from_the_softmax_where_answers_part(
    adapted,
) -> None:
    """The loss under `RestrictedSoftmax` is the cross-entropy with the lacking answer's token
    removed at its divergence position: checked against a hand computation, on a model trained
    to answer flu or cold, so cold holds real probability there and the two losses differ."""
    tok = adapted.tokenizer
    lacking = lacking_answer_ids(tok, {"flu": " flu", "cold": " cold"}, ["flu"])
    assert lacking == (tuple(tok(" cold", add_special_tokens=False)["input_ids"]),)
    both = [Example(f"patient: case {i}.\ntriage:", (" flu", " cold")[i % 2]) for i in range(16)]
    config = TrainConfig(steps=30, batch_size=8, lr=3e-2)
    g0 = initial_global_adapter(adapted)
    adapted.set_adapter({**g0, **train_update(adapted, g0, both, config).tensors})
    batch = collate([encode_pair(tok, "patient: case 0.\ntriage:", " flu", 64)], tok.pad_token_id)
    with torch.no_grad():
        plain = adapted.model(**batch)
        with RestrictedSoftmax(adapted.model, lacking) as restricted:
            restricted.prepare(batch)
            kept = adapted.model(**batch).loss
    first = batch["labels"][0].tolist().index(tok(" flu", add_special_tokens=False)["input_ids"][0])
    logits = plain.logits.clone()
    logits[0, first - 1, lacking[0][0]] = float("-inf")
    by_hand = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:])
    assert torch.isclose(kept, by_hand, atol=1e-6) and plain.loss - kept > 1e-3


def test_restricted_softmax_leaves_no_hook_behind(adapted) -> None:
    head = adapted.model.get_output_embeddings()
    with RestrictedSoftmax(adapted.model, [(1, 2)]) as restricted:
        restricted.prepare({"labels": torch.tensor([[IGNORE, 1, 3]])})
        assert head._forward_hooks
    assert not head._forward_hooks
