"""Cost and accuracy of the Shapley estimators, on synthetic rounds and on the real utility.

In the agent, one utility evaluation is a validation pass over a rebuilt model, so the column
that matters is `evals` (distinct coalitions evaluated); wall time in the synthetic tables is the
estimators' own overhead on a utility that costs microseconds. Error is measured against exact
enumeration, as max |phi - exact phi| / max |exact phi|.

Synthetic (default): two rounds per N, both averages of update vectors normalised over the valid
set (the agent's utility shape), scored by negative squared distance to a target:
  noisy       updates of mixed quality and large noise, one of them harmful
  saturating  similar, helpful updates: a few already give most of what all give

Real (`--real 8 9 10`): N non-IID edges of the tiny text model train one round of real LoRA
updates; edge 0 validates with the agent's metric and utility (bench/real_round.py). All 2^N - 1
coalitions are evaluated once (cached under .edgetune/bench/), then every sampler budget and
seed is run against that table, counting the distinct coalitions it asks for.

Run: .venv/bin/python bench/bench_shapley.py [--min-n 4] [--max-n 12] [--seed 0]
     HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_shapley.py --real 8 9 10 [--seeds 10]
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.contribution import ShapleyConfig, ShapleyResult, exact_shapley, monte_carlo_shapley

Game = Callable[[frozenset[int]], float]


def averaging_game(updates: np.ndarray, target: np.ndarray) -> Game:
    """v(S) = gain in -|target - sum_{j in S} u_j / n|^2 over the base (change 0)."""
    base = float(target @ target)
    n = len(updates)

    def utility(coalition: frozenset[int]) -> float:
        members = sorted(coalition)
        return base - float(np.sum((target - updates[members].sum(axis=0) / n) ** 2))

    return utility


def noisy_game(n: int, seed: int, dim: int = 16) -> Game:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    quality = rng.uniform(0.2, 1.2, size=n)
    quality[n // 2] = -0.8
    updates = quality[:, None] * target + rng.normal(scale=0.6, size=(n, dim))
    return averaging_game(updates, target)


def saturating_game(n: int, seed: int, dim: int = 16) -> Game:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    updates = rng.uniform(0.8, 1.0, size=n)[:, None] * target + rng.normal(0.0, 0.1, (n, dim))
    return averaging_game(updates, target)


@dataclass(frozen=True)
class Row:
    n: int
    method: str
    result: ShapleyResult
    seconds: float
    abs_error: float
    rel_error: float


def timed(estimate: Callable[[], ShapleyResult]) -> tuple[ShapleyResult, float]:
    start = time.perf_counter()
    result = estimate()
    return result, time.perf_counter() - start


def measure(game: Game, n: int, config: ShapleyConfig) -> list[Row]:
    """Exact, sampled (mc) without truncation, and sampled with GTG truncation (the default)."""
    exact, exact_seconds = timed(lambda: exact_shapley(range(n), game))
    scale = max(abs(v) for v in exact.values.values())
    rows = [Row(n, "exact", exact, exact_seconds, 0.0, 0.0)]
    variants = {
        "mc": replace(config, truncation_tolerance=0.0),
        "mc+gtg": config,
    }
    for method, variant in variants.items():
        result, seconds = timed(lambda v=variant: monte_carlo_shapley(range(n), game, v))
        error = max(abs(result.values[p] - exact.values[p]) for p in exact.values)
        rows.append(Row(n, method, result, seconds, error, error / scale))
    return rows


def render(game: str, rows: list[Row], config: ShapleyConfig) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Shapley estimators on the {game} round: cost and accuracy against exact",
        caption=(
            f"convergence_tolerance={config.convergence_tolerance}, "
            f"truncation_tolerance={config.truncation_tolerance} (mc+gtg rows), "
            f"max_permutations={config.max_permutations}, seed={config.seed}; "
            "abs err = max |phi - exact phi|, rel err = abs err / max |exact phi|"
        ),
    )
    for name in ("N", "method", "evals", "2^N-1", "perms", "conv", "wall s"):
        table.add_column(name, justify="left" if name == "method" else "right")
    table.add_column("abs err", justify="right")
    table.add_column("rel err", justify="right")
    for row in rows:
        sampled = row.method != "exact"
        table.add_row(
            str(row.n),
            row.method,
            str(row.result.evaluations),
            str(2**row.n - 1),
            str(row.result.permutations) if sampled else "-",
            ("yes" if row.result.converged else "no") if sampled else "-",
            f"{row.seconds:.3f}",
            f"{row.abs_error:.1e}" if sampled else "-",
            f"{row.rel_error:.1%}" if sampled else "-",
        )
    return table


def real_table(n: int, seed: int, folder: Path) -> tuple[np.ndarray, float]:
    """v(S) of every coalition (index = bit mask, v(empty) = 0) and the seconds per evaluation."""
    path = folder / f"real-utility-n{n}-seed{seed}.npz"
    if path.is_file():
        saved = np.load(path)
        return saved["values"], float(saved["seconds"])
    from real_round import federation, validator_utility  # torch and the model: only when asked

    fed = federation(n, seed=seed)
    updates = fed.train_round(fed.initial_global, 1)
    game = validator_utility(fed.edges[0].learner.metric, fed.initial_global, updates)
    values = np.zeros(1 << n)
    start = time.perf_counter()
    for mask in range(1, 1 << n):
        values[mask] = game(frozenset(i for i in range(n) if mask >> i & 1))
    seconds = (time.perf_counter() - start) / ((1 << n) - 1)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, values=values, seconds=seconds)
    return values, seconds


@dataclass(frozen=True)
class Sampled:
    evals: float  # mean over seeds
    permutations: float
    converged: float  # fraction of seeds
    mean_error: float
    worst_error: float


def sample_on_table(values: np.ndarray, n: int, config: ShapleyConfig, seeds: int) -> Sampled:
    """The sampler with `config` over `seeds` seeds, against exact, on a tabulated game."""

    def game(coalition: frozenset[int]) -> float:
        return float(values[sum(1 << i for i in coalition)])

    exact = exact_shapley(range(n), game).values
    scale = max(abs(v) for v in exact.values())
    runs = [monte_carlo_shapley(range(n), game, replace(config, seed=s)) for s in range(seeds)]
    errors = [max(abs(r.values[p] - exact[p]) for p in exact) / scale for r in runs]
    return Sampled(
        float(np.mean([r.evaluations for r in runs])),
        float(np.mean([r.permutations for r in runs])),
        float(np.mean([r.converged for r in runs])),
        float(np.mean(errors)),
        max(errors),
    )


def real_report(n: int, seed: int, seeds: int, folder: Path) -> Table:
    values, seconds = real_table(n, seed, folder)
    table = Table(
        box=box.MARKDOWN,
        title=(
            f"N = {n}, real utility (tiny model, round 1): exact = {2**n - 1} evals "
            f"({seconds:.2f} s each, {seconds * (2**n - 1):.0f} s)"
        ),
        caption=f"sampler means over {seeds} seeds; worst = largest rel err over the seeds",
    )
    for name in ("sampler", "perms", "evals", "evals / exact", "conv", "mean err", "worst err"):
        table.add_column(name, justify="left" if name == "sampler" else "right")
    fixed = ShapleyConfig(convergence_tolerance=0.0)
    rows = []
    for truncation, name in ((0.0, "mc"), (0.05, "mc+gtg")):
        for k in (1, 2, 4, 8, 16, 32, 64):
            config = replace(fixed, max_permutations=k * n, truncation_tolerance=truncation)
            rows.append((f"{name}, {k * n} perms", sample_on_table(values, n, config, seeds)))
    rows.append(
        ("default (tol 0.02, gtg 0.05)", sample_on_table(values, n, ShapleyConfig(), seeds))
    )
    for label, r in rows:
        table.add_row(
            label, f"{r.permutations:.0f}", f"{r.evals:.0f}", f"{r.evals / (2**n - 1):.2f}",
            f"{r.converged:.0%}", f"{r.mean_error:.1%}", f"{r.worst_error:.1%}",
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-n", type=int, default=4)
    parser.add_argument("--max-n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=int, nargs="*", help="N values on the real utility")
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds per real budget")
    parser.add_argument("--cache", type=Path, default=Path(".edgetune/bench"))
    args = parser.parse_args()
    console = Console(width=200)
    if args.real:
        for n in args.real:
            console.print(real_report(n, args.seed, args.seeds, args.cache))
        return
    config = ShapleyConfig(seed=args.seed)
    for game_name, make in (("noisy", noisy_game), ("saturating", saturating_game)):
        rows = []
        for n in range(args.min_n, args.max_n + 1):
            rows += measure(make(n, args.seed), n, config)
        console.print(render(game_name, rows, config))


if __name__ == "__main__":
    main()
