"""Cost and accuracy of the Shapley estimators on synthetic federated rounds.

In the agent, one utility evaluation is a validation pass over a rebuilt model, so the column
that matters is `evals` (distinct coalitions evaluated); wall time here is the estimators' own
overhead on a utility that costs microseconds. Error is measured against exact enumeration.

Two rounds per N, both sample-weighted averages of update vectors scored by negative squared
distance to a target (the shape of the real utility):
  noisy       updates of mixed quality and large noise, one of them harmful
  saturating  similar, helpful updates: a few already give most of what all give

Run: .venv/bin/python bench/bench_shapley.py [--min-n 4] [--max-n 12] [--seed 0]
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.contribution import ShapleyConfig, ShapleyResult, exact_shapley, monte_carlo_shapley

Game = Callable[[frozenset[int]], float]


def averaging_game(updates: np.ndarray, samples: np.ndarray, target: np.ndarray) -> Game:
    """v(S) = gain in -|target - weighted mean of S's updates|^2 over the base (change 0)."""
    base = float(target @ target)

    def utility(coalition: frozenset[int]) -> float:
        members = sorted(coalition)
        weights = samples[members] / samples[members].sum()
        return base - float(np.sum((target - weights @ updates[members]) ** 2))

    return utility


def noisy_game(n: int, seed: int, dim: int = 16) -> Game:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    quality = rng.uniform(0.2, 1.2, size=n)
    quality[n // 2] = -0.8
    updates = quality[:, None] * target + rng.normal(scale=0.6, size=(n, dim))
    return averaging_game(updates, rng.integers(50, 500, size=n).astype(float), target)


def saturating_game(n: int, seed: int, dim: int = 16) -> Game:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=dim)
    updates = rng.uniform(0.8, 1.0, size=n)[:, None] * target + rng.normal(0.0, 0.1, (n, dim))
    return averaging_game(updates, rng.integers(50, 500, size=n).astype(float), target)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-n", type=int, default=4)
    parser.add_argument("--max-n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = ShapleyConfig(seed=args.seed)
    console = Console()
    for game_name, make in (("noisy", noisy_game), ("saturating", saturating_game)):
        rows = []
        for n in range(args.min_n, args.max_n + 1):
            rows += measure(make(n, args.seed), n, config)
        console.print(render(game_name, rows, config))


if __name__ == "__main__":
    main()
