import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load

from edgetune.learning import (
    AdapterSpec,
    InvalidConfig,
    MalformedAdapter,
    adapter_from_bytes,
    adapter_to_bytes,
    initial_global_adapter,
)


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "b.lora_B.weight": torch.randn(6, 2, generator=g),
        "a.lora_A.weight": torch.randn(2, 5, generator=g),
    }


def _shapes(t: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in t.items()}


def test_spec_validation_names_the_bad_value() -> None:
    with pytest.raises(InvalidConfig, match=r"rank.*-1"):
        AdapterSpec(rank=-1)
    with pytest.raises(InvalidConfig, match=r"mode.*'avg'"):
        AdapterSpec(mode="avg")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match=r"dropout.*1.5"):
        AdapterSpec(dropout=1.5)
    with pytest.raises(InvalidConfig, match="target_modules"):
        AdapterSpec(target_modules=())


def test_spec_hash_is_canonical_and_sensitive() -> None:
    a = AdapterSpec(target_modules=("q_proj", "v_proj"))
    assert a.spec_hash() == AdapterSpec(target_modules=["v_proj", "q_proj"]).spec_hash()  # type: ignore[arg-type]
    assert (
        a.spec_hash() != AdapterSpec(target_modules=("q_proj", "v_proj"), init_seed=1).spec_hash()
    )
    assert (
        a.spec_hash() != AdapterSpec(target_modules=("q_proj", "v_proj"), mode="fedit").spec_hash()
    )
    assert AdapterSpec.from_json(a.to_json()) == a
    assert json.loads(a.to_json())["dtype"] == "float32"


@pytest.mark.parametrize(
    ("text", "says"),
    [("{", "not JSON"), ("[]", "must be an object"), ('{"rank": 8, "colour": 1}', "unexpected")],
)
def test_a_malformed_spec_is_one_named_error(text: str, says: str) -> None:
    with pytest.raises(InvalidConfig, match=says):
        AdapterSpec.from_json(text)


def test_bytes_are_identical_across_builds_and_insertion_order() -> None:
    t = _tensors()
    again = dict(reversed(list(_tensors().items())))
    assert adapter_to_bytes(t) == adapter_to_bytes(again)
    assert adapter_to_bytes(t) == adapter_to_bytes({k: v.double() for k, v in t.items()})


def test_bytes_round_trip_and_load_in_safetensors() -> None:
    t = _tensors()
    data = adapter_to_bytes(t)
    parsed = adapter_from_bytes(data, _shapes(t))
    assert all(torch.equal(parsed[k], t[k]) for k in t)
    assert all(torch.equal(st_load(data)[k], t[k]) for k in t)
    assert list(json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])) == sorted(t)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: {**t, "extra.lora_B.weight": torch.zeros(1)}, "keys differ"),
        (lambda t: {k: v for k, v in t.items() if "lora_A" not in k}, "keys differ"),
        (lambda t: {**t, "b.lora_B.weight": torch.zeros(3, 4)}, "shape"),
        (lambda t: {**t, "b.lora_B.weight": torch.full((6, 2), float("nan"))}, "NaN or Inf"),
        (lambda t: {**t, "b.lora_B.weight": torch.full((6, 2), float("inf"))}, "NaN or Inf"),
    ],
)
def test_malformed_content_is_rejected(mutate, reason: str) -> None:
    t = _tensors()
    with pytest.raises(MalformedAdapter, match=reason) as info:
        adapter_from_bytes(adapter_to_bytes(mutate(t)), _shapes(t))
    assert "\n" not in str(info.value)


def test_unparsable_and_wrong_dtype_bytes_are_rejected() -> None:
    t = _tensors()
    shapes = _shapes(t)
    for junk in (b"", b"\x00" * 7, b"\xff" * 64, struct.pack("<Q", 4) + b"nope"):
        with pytest.raises(MalformedAdapter):
            adapter_from_bytes(junk, shapes)
    from safetensors.torch import save

    with pytest.raises(MalformedAdapter, match="dtype"):
        adapter_from_bytes(save({k: v.half() for k, v in t.items()}), shapes)
    with pytest.raises(MalformedAdapter, match=r"canonical|__metadata__"):
        adapter_from_bytes(save(t, metadata={"x": "y"}), shapes)
    truncated = adapter_to_bytes(t)[:-4]
    with pytest.raises(MalformedAdapter, match="inconsistent"):
        adapter_from_bytes(truncated, shapes)


def test_initial_global_is_seeded_a_and_zero_b(adapted) -> None:
    g = initial_global_adapter(adapted)
    assert set(g) == set(adapted.shapes())
    a_keys = [k for k in g if ".lora_A." in k]
    b_keys = [k for k in g if ".lora_B." in k]
    assert a_keys and len(a_keys) == len(b_keys)
    assert all(torch.count_nonzero(g[k]) == 0 for k in b_keys)
    assert all(g[k].abs().max() <= 1 / np.sqrt(g[k].shape[1]) for k in a_keys)
    assert adapter_to_bytes(g) == adapter_to_bytes(initial_global_adapter(adapted))
    other = AdapterSpec(rank=4, alpha=8.0, init_seed=1)
    adapted.spec = other
    assert adapter_to_bytes(initial_global_adapter(adapted)) != adapter_to_bytes(g)


def test_edges_take_a_from_the_published_bytes(adapted) -> None:
    g = initial_global_adapter(adapted)
    published = adapter_to_bytes(g)
    adapted.set_adapter(adapter_from_bytes(published, adapted.shapes()))
    assert adapter_to_bytes(adapted.get_adapter()) == published
    exchanged = adapted.get_adapter(trained_only=True)
    assert exchanged and all(".lora_B." in k for k in exchanged)
    frozen = [n for n, p in adapted.model.named_parameters() if "lora_A" in n and p.requires_grad]
    assert frozen == []


def test_set_adapter_rejects_foreign_keys(adapted) -> None:
    with pytest.raises(MalformedAdapter, match="lacks"):
        adapted.set_adapter({"nope.lora_B.weight": torch.zeros(1)})
