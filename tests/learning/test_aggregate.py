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
)

A, B = "m.lora_A.weight", "m.lora_B.weight"


def _global() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {A: torch.rand(4, 8, generator=g), B: torch.zeros(16, 4)}


def _updates(k: int = 4) -> list[tuple[dict[str, torch.Tensor], int]]:
    g = torch.Generator().manual_seed(1)
    return [({B: torch.randn(16, 4, generator=g) * 10 ** (i - 2)}, 3 + 7 * i) for i in range(k)]


def test_weighted_mean_of_changes_keeps_frozen_a() -> None:
    prev, ups = _global(), _updates()
    new = aggregate(prev, ups)
    total = sum(n for _, n in ups)
    expected = sum(n / total * u[B].double() for u, n in ups)
    assert torch.allclose(new[B].double(), expected, atol=1e-6)
    assert torch.equal(new[A], prev[A]) and new[B].dtype == torch.float32
    assert list(new) == sorted(new)


def test_no_updates_keeps_the_previous_global() -> None:
    prev = _global()
    assert adapter_to_bytes(aggregate(prev, [])) == adapter_to_bytes(prev)
    assert adapter_to_bytes(coalition_adapter(prev, _updates(), [])) == adapter_to_bytes(prev)


def test_coalition_is_the_aggregate_of_its_members() -> None:
    prev, ups = _global(), _updates()
    assert adapter_to_bytes(coalition_adapter(prev, ups, [2, 0])) == adapter_to_bytes(
        aggregate(prev, [ups[0], ups[2]])
    )
    with pytest.raises(LearningError, match="out of range"):
        coalition_adapter(prev, ups, [7])


def test_bad_updates_are_refused() -> None:
    prev, ups = _global(), _updates(2)
    with pytest.raises(LearningError, match="sample count 0"):
        aggregate(prev, [ups[0], (ups[1][0], 0)])
    with pytest.raises(MalformedAdapter, match="different keys"):
        aggregate(prev, [ups[0], ({A: prev[A]}, 5)])
    with pytest.raises(MalformedAdapter, match="shape"):
        aggregate(prev, [({B: torch.zeros(2, 2)}, 5)])


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
    n = int((folder / f"n{i}").read_text())
    updates[i] = (adapter_from_bytes(data, {"m.lora_B.weight": (16, 4)}), n)
print(hashlib.sha256(adapter_to_bytes(aggregate_in_reveal_order(prev, updates))).hexdigest())
"""


def test_two_processes_agree_bit_for_bit_whatever_the_arrival_order(tmp_path: Path) -> None:
    (tmp_path / "global").write_bytes(adapter_to_bytes(_global()))
    for i, (u, n) in enumerate(_updates()):
        (tmp_path / f"u{i}").write_bytes(adapter_to_bytes(u))
        (tmp_path / f"n{i}").write_text(str(n))
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
    ffa_like = [({A: shared_a, B: torch.randn(16, 4, generator=g)}, n) for n in (3, 5)]
    assert fedit_product_error(ffa_like) == pytest.approx(0.0, abs=1e-12)
    fedit = [
        ({A: torch.randn(4, 8, generator=g), B: torch.randn(16, 4, generator=g)}, n) for n in (3, 5)
    ]
    assert fedit_product_error(fedit) > 0.1
