from collections import Counter

import pytest
import torch

from edgetune.learning import (
    AdapterSpec,
    DataError,
    Example,
    TrainConfig,
    adapter_to_bytes,
    aggregate,
    attach_adapter,
    batch_order,
    class_balanced_weights,
    evaluate,
    initial_global_adapter,
    load_base_model,
    train_update,
    triage_splits,
)
from edgetune.learning.train import IGNORE, encode_pair

CONFIG = TrainConfig(steps=150, batch_size=16, lr=3e-2, seed=0)


def test_loss_masks_the_prompt_and_keeps_the_response(adapted) -> None:
    tok = adapted.tokenizer
    ids, labels = encode_pair(tok, "patient: a cough.\ntriage:", " flu", 64)
    n_response = len(tok(" flu", add_special_tokens=False)["input_ids"]) + 1
    assert labels[-n_response:] == ids[-n_response:] and ids[-1] == tok.eos_token_id
    assert set(labels[:-n_response]) == {IGNORE}


def test_training_is_deterministic_and_only_touches_b(adapted) -> None:
    train, _ = triage_splits(64, 2, seed=0)
    g0 = initial_global_adapter(adapted)
    first = train_update(adapted, g0, train, TrainConfig(steps=5, batch_size=8))
    second = train_update(adapted, g0, train, TrainConfig(steps=5, batch_size=8))
    assert adapter_to_bytes(first.tensors) == adapter_to_bytes(second.tensors)
    assert set(first.tensors) == set(adapted.shapes(trained_only=True))
    assert all(torch.count_nonzero(v) > 0 for v in first.tensors.values())
    assert first.n_samples == 64 and len(first.losses) == 5 and first.wall_s > 0
    a_after = {k: v for k, v in adapted.get_adapter().items() if ".lora_A." in k}
    assert all(torch.equal(a_after[k], g0[k]) for k in a_after)


def test_training_raises_accuracy_and_fedavg_keeps_it(adapted) -> None:
    train, val = triage_splits(240, 12, seed=0)
    g0 = initial_global_adapter(adapted)
    before = evaluate(adapted, val, g0)
    result = train_update(adapted, g0, train, CONFIG)
    after = evaluate(adapted, val, {**g0, **result.tensors})
    assert after.loss < before.loss - 1.0
    assert after.accuracy is not None and after.accuracy >= before.accuracy + 0.15
    assert after.metric == after.accuracy
    halves = [train[:120], train[120:]]
    short = TrainConfig(steps=40, batch_size=16, lr=3e-2, seed=1)
    ups = [train_update(adapted, g0, h, short).tensors for h in halves]
    merged = evaluate(adapted, val, aggregate(g0, ups))
    assert merged.loss < before.loss - 1.0


def test_unlabelled_data_reports_negative_loss(adapted) -> None:
    examples = [Example("q: how is your head?\na:", " it feels fine.")]
    result = evaluate(adapted, examples, initial_global_adapter(adapted))
    assert result.accuracy is None and result.metric == -result.loss < 0


def test_fedit_mode_trains_and_exchanges_a_too(tiny_path) -> None:
    adapted = attach_adapter(
        load_base_model(tiny_path), AdapterSpec(rank=4, alpha=8.0, mode="fedit")
    )
    g0 = initial_global_adapter(adapted)
    train, _ = triage_splits(32, 1, seed=0)
    result = train_update(adapted, g0, train, TrainConfig(steps=3, batch_size=8))
    a_keys = [k for k in result.tensors if ".lora_A." in k]
    assert a_keys and any(not torch.equal(result.tensors[k], g0[k]) for k in a_keys)


def test_class_balanced_batches_draw_every_class_about_equally() -> None:
    classes = ["normal"] * 80 + ["effusion"] * 15 + ["pneumonia"] * 5
    config = TrainConfig(steps=300, batch_size=10)
    weights = class_balanced_weights(classes)
    order = batch_order(len(classes), config, torch.Generator().manual_seed(0), weights)
    assert len(order) == 300 and all(len(batch) == 10 for batch in order)
    drawn = Counter(classes[i] for batch in order for i in batch)
    assert all(abs(drawn[c] / 3000 - 1 / 3) < 0.03 for c in ("normal", "effusion", "pneumonia"))
    # Unweighted, the same generator follows the case mix (80% normal).
    plain = batch_order(len(classes), config, torch.Generator().manual_seed(0))
    assert Counter(classes[i] for batch in plain for i in batch)["normal"] == 2400
    again = batch_order(len(classes), config, torch.Generator().manual_seed(0), weights)
    assert again == order
    with pytest.raises(DataError, match="3 sample weights for 100 examples"):
        batch_order(len(classes), config, torch.Generator(), weights[:3])
