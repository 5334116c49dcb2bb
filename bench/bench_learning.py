"""Measure the learning stack on the tiny base: sizes, step time, and accuracy before/after
one edge trains and after FedAvg of three non-IID edges. Prints a table.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_learning.py [--steps 60] [--rounds 3]
"""

import argparse
import dataclasses
import time

from rich.console import Console
from rich.table import Table

from edgetune.learning import (
    AdapterSpec,
    EvalResult,
    TrainConfig,
    adapter_to_bytes,
    aggregate,
    attach_adapter,
    base_model_hash,
    ensure_tiny_model,
    evaluate,
    initial_global_adapter,
    load_base_model,
    shard_non_iid,
    train_update,
    triage_splits,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="local steps per edge per round")
    parser.add_argument("--rounds", type=int, default=3, help="FedAvg rounds over 3 edges")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet non-IID alpha")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []

    start = time.perf_counter()
    path = ensure_tiny_model()
    rows.append(("tiny model ready (build or cache)", f"{time.perf_counter() - start:.1f} s"))
    base = load_base_model(path, expected_hash=base_model_hash(path))
    adapted = attach_adapter(base, AdapterSpec(rank=8, alpha=16.0))
    g0 = initial_global_adapter(adapted)
    base_bytes = (path / "model.safetensors").stat().st_size
    total = sum(p.numel() for p in adapted.model.parameters())
    trained = sum(p.numel() for p in adapted.model.parameters() if p.requires_grad)
    rows += [
        ("base parameters", f"{total - sum(v.numel() for v in g0.values()):,}"),
        ("trained (exchanged) parameters", f"{trained:,} ({100 * trained / total:.2f}%)"),
        ("base weights bytes", f"{base_bytes:,}"),
        ("global adapter bytes (A+B)", f"{len(adapter_to_bytes(g0)):,}"),
    ]

    train, val = triage_splits(600, 20, seed=0)
    config = TrainConfig(steps=args.steps, batch_size=16, lr=3e-2, seed=0)
    before = evaluate(adapted, val, g0)
    one = train_update(adapted, g0, train, config)
    rows += [
        ("update bytes (B only)", f"{len(adapter_to_bytes(one.tensors)):,}"),
        ("train step time", f"{1000 * one.wall_s / args.steps:.0f} ms (batch 16)"),
        (f"one edge round ({args.steps} steps)", f"{one.wall_s:.1f} s"),
        ("accuracy / loss before", f"{before.accuracy:.2f} / {before.loss:.2f}"),
        (
            "accuracy / loss after one edge (600 ex)",
            _fmt(evaluate(adapted, val, {**g0, **one.tensors})),
        ),
    ]

    shards = shard_non_iid(train, 3, alpha=args.alpha, seed=0, min_size=20)
    rows.append(("non-IID shard sizes", ", ".join(str(len(s)) for s in shards)))
    glob = g0
    for r in range(1, args.rounds + 1):
        updates = []
        for i, shard in enumerate(shards):
            result = train_update(
                adapted, glob, shard, dataclasses.replace(config, seed=r * 10 + i)
            )
            updates.append(result.tensors)
            if r == 1:
                rows.append(
                    (
                        f"edge {i} alone after round 1",
                        _fmt(evaluate(adapted, val, {**glob, **result.tensors})),
                    )
                )
        start = time.perf_counter()
        glob = aggregate(glob, updates)
        agg_ms = 1000 * (time.perf_counter() - start)
        rows.append(
            (f"FedAvg round {r} (aggregate {agg_ms:.1f} ms)", _fmt(evaluate(adapted, val, glob)))
        )

    table = Table(title="edgetune learning bench (tiny base, triage task, 100 balanced val ex)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _fmt(result: EvalResult) -> str:
    return f"{result.accuracy:.2f} / {result.loss:.2f}"


if __name__ == "__main__":
    main()
