import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgetune.learning import (
    LearningError,
    MalformedAdapter,
    adapter_to_bytes,
    aggregate,
    aggregate_in_reveal_order,
    coalition_adapter,
    fedit_product_error,
    update_delta,
)

A, B = "m.lora_A.weight", "m.lora_B.weight"


def _global() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {A: torch.rand(4, 8, generator=g), B: torch.zeros(16, 4)}


def _updates(k: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [{B: torch.randn(16, 4, generator=g) * 10 ** (i - 2)} for i in range(k)]


def _bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return adapter_to_bytes(tensors)


def test_uniform_mean_of_changes_keeps_frozen_a() -> None:
    prev, ups = _global(), _updates()
    prev[B] = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    new = aggregate(prev, ups)
    expected = prev[B].double() + sum((u[B].double() - prev[B].double()) / 4 for u in ups)
    assert torch.allclose(new[B].double(), expected, atol=1e-6)
    assert torch.equal(new[A], prev[A]) and new[B].dtype == torch.float32
    assert list(new) == sorted(new)


def test_no_updates_keeps_the_previous_global() -> None:
    prev = _global()
    assert _bytes(aggregate(prev, [])) == _bytes(prev)
    assert _bytes(coalition_adapter(prev, _updates(), [])) == _bytes(prev)


def test_coalition_weights_are_normalised_over_all_updates_not_the_coalition() -> None:
    prev, ups = _global(), _updates()
    pair = coalition_adapter(prev, ups, [2, 0])
    expected = (ups[0][B].double() + ups[2][B].double()) / 4  # / |V| = 4, not / |S| = 2
    assert torch.allclose(pair[B].double(), expected, atol=1e-7)
    assert _bytes(pair) != _bytes(aggregate(prev, [ups[0], ups[2]]))
    with pytest.raises(LearningError, match="out of range"):
        coalition_adapter(prev, ups, [7])


def test_grand_coalition_is_the_aggregate_bit_for_bit() -> None:
    prev, ups = _global(), _updates()
    assert _bytes(coalition_adapter(prev, ups, [3, 1, 0, 2])) == _bytes(aggregate(prev, ups))


def test_explicit_weights_are_normalised_over_all_updates() -> None:
    prev, ups = _global(), _updates(2)
    one = coalition_adapter(prev, ups, [1], weights=[3.0, 1.0])
    assert torch.allclose(one[B].double(), ups[1][B].double() / 4, atol=1e-9)
    equal = coalition_adapter(prev, ups, [0, 1], weights=[2.0, 2.0])
    assert _bytes(equal) == _bytes(aggregate(prev, ups))  # equal weights are the uniform case
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [1.0, -2.0]):
        with pytest.raises(LearningError, match="weight"):
            coalition_adapter(prev, ups, [0], weights=bad)


def test_a_zero_update_changes_no_byte_of_any_coalition() -> None:
    prev, ups = _global(), _updates(3)
    prev[B][0, 0] = -0.0  # a negative zero a zero change would otherwise flip to +0.0
    ups[1][B][0, 0] = 0.0
    ups[2][B][0, 0] = 0.0
    zero = {B: prev[B].clone()}
    everything = [*ups, zero]
    for members in ([], [0], [1, 2], [0, 1, 2]):
        assert _bytes(coalition_adapter(prev, everything, [*members, 3])) == _bytes(
            coalition_adapter(prev, everything, members)
        )


def test_update_delta_is_the_flat_float64_change_in_key_order() -> None:
    prev = {
        "a.lora_B.weight": torch.ones(2),
        "b.lora_B.weight": torch.zeros(1, 2),
        A: torch.ones(1),
    }
    update = {"b.lora_B.weight": torch.tensor([[3.0, 4.0]]), "a.lora_B.weight": torch.ones(2)}
    delta = update_delta(prev, update)
    assert delta.dtype.name == "float64" and delta.tolist() == [0.0, 0.0, 3.0, 4.0]
    with pytest.raises(MalformedAdapter, match="shape"):
        update_delta(prev, {"a.lora_B.weight": torch.ones(3)})


def test_bad_updates_are_refused() -> None:
    prev, ups = _global(), _updates(2)
    with pytest.raises(MalformedAdapter, match="different keys"):
        aggregate(prev, [ups[0], {A: prev[A]}])
    with pytest.raises(MalformedAdapter, match="absent from the global"):
        aggregate(prev, [{"x.lora_B.weight": torch.zeros(16, 4)}])
    with pytest.raises(MalformedAdapter, match="shape"):
        aggregate(prev, [{B: torch.zeros(2, 2)}])


_WORKER = """
import hashlib, sys
from pathlib import Path
from edgetune.learning import adapter_from_bytes, adapter_to_bytes, aggregate_in_reveal_order
folder, order = Path(sys.argv[1]), [int(i) for i in sys.argv[2].split(",")]
shapes = {"m.lora_A.weight": (4, 8), "m.lora_B.weight": (16, 4)}
prev = adapter_from_bytes((folder / "global").read_bytes(), shapes)
updates = {}
for i in order:  # arrival order differs per process; reveal index fixes the sum order
    data = (folder / f"u{i}").read_bytes()
    updates[i] = adapter_from_bytes(data, {"m.lora_B.weight": (16, 4)})
print(hashlib.sha256(adapter_to_bytes(aggregate_in_reveal_order(prev, updates))).hexdigest())
"""


def test_two_processes_agree_bit_for_bit_whatever_the_arrival_order(tmp_path: Path) -> None:
    (tmp_path / "global").write_bytes(adapter_to_bytes(_global()))
    for i, u in enumerate(_updates()):
        (tmp_path / f"u{i}").write_bytes(adapter_to_bytes(u))
    digests = [
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(tmp_path), order],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for order in ("0,1,2,3", "3,1,0,2")
    ]
    local = aggregate(_global(), _updates())
    assert digests[0] == digests[1] == hashlib.sha256(adapter_to_bytes(local)).hexdigest()


def test_reveal_index_not_insertion_order_fixes_the_sum() -> None:
    # Float sums are not associative, so the sum must run in reveal order, not arrival order.
    prev, ups = _global(), _updates()
    assert adapter_to_bytes(
        aggregate_in_reveal_order(prev, dict(enumerate(ups)))
    ) == adapter_to_bytes(aggregate_in_reveal_order(prev, {i: ups[i] for i in (3, 0, 2, 1)}))


def test_fedit_error_is_zero_with_shared_a_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(2)
    shared_a = torch.randn(4, 8, generator=g)
    ffa_like = [{A: shared_a, B: torch.randn(16, 4, generator=g)} for _ in range(2)]
    assert fedit_product_error(ffa_like) == pytest.approx(0.0, abs=1e-12)
    fedit = [
        {A: torch.randn(4, 8, generator=g), B: torch.randn(16, 4, generator=g)} for _ in (3, 5)
    ]
    assert fedit_product_error(fedit) > 0.1
