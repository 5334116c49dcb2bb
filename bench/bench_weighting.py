"""Is the averaging weight a lever? Shapley pay of an edge that over-claims its sample count.

Real LoRA updates on the tiny model: `--edges` non-IID edges as `edgetune federation` builds them
train one round (or `--rounds`, each from the previous uniform FedAvg). The validator (edge 0's
private data, the agent's metric and utility shape, weights normalised over the valid set) scores
them exactly under three weightings of update j:

  samples   its self-reported sample count n_j
  capped    min(n_j, cap), cap = 2x the largest true count (a generous task owner's maxSamples)
  uniform   1 for everyone (claims are ignored)

Then each edge in turn claims 10x and 100x its true count, all else equal. Reported: its Shapley
value and its share of the trainer pool (max(phi, 0) over the sum of max(phi, 0), how the
contract splits it) against honest claims.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_weighting.py [--edges 5] [--rounds 2]
"""

import argparse
import math
from collections.abc import Sequence

from real_round import federation, validator_utility
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.contribution import exact_shapley
from edgetune.learning import aggregate

FACTORS = (10, 100)
WEIGHTINGS = ("samples", "capped", "uniform")


def weights_for(weighting: str, claims: Sequence[int], cap: int) -> tuple[float, ...] | None:
    if weighting == "samples":
        return tuple(float(c) for c in claims)
    if weighting == "capped":
        return tuple(float(min(c, cap)) for c in claims)
    return None  # uniform


def shares(values: dict[int, float]) -> dict[int, float]:
    positive = math.fsum(max(v, 0.0) for v in values.values())
    return {i: (max(v, 0.0) / positive if positive else 0.0) for i, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fed = federation(args.edges, seed=args.seed)
    true = [edge.samples for edge in fed.edges]
    cap = 2 * max(true)
    metric = fed.edges[0].learner.metric
    detail = Table(box=box.MARKDOWN, title="Over-claiming edge: Shapley value and pool share")
    for name in ("round", "weighting", "edge", "true n", "claim", "phi honest", "phi claimed"):
        detail.add_column(name, justify="right")
    detail.add_column("share honest", justify="right")
    detail.add_column("share claimed", justify="right")
    summary = Table(box=box.MARKDOWN, title="Weighting lever: effect of over-claiming on own pay")
    for name in ("round", "weighting", "claim", "edges whose share rose", "mean d share"):
        summary.add_column(name, justify="right")
    summary.add_column("max d share", justify="right")
    summary.add_column("v(V) honest", justify="right")
    previous = fed.initial_global
    console = Console(width=200)
    for round_ in range(1, args.rounds + 1):
        updates = fed.train_round(previous, round_)
        cache: dict[tuple[float, ...] | None, dict[int, float]] = {}

        def phi(
            weights: tuple[float, ...] | None, ups=updates, prev=previous, cache=cache
        ) -> dict[int, float]:
            if weights not in cache:  # uniform ignores claims: one game serves every claim
                game = validator_utility(metric, prev, ups, weights)
                cache[weights] = exact_shapley(range(len(ups)), game).values
            return cache[weights]

        for weighting in WEIGHTINGS:
            honest = phi(weights_for(weighting, true, cap))
            honest_share = shares(honest)
            grand = math.fsum(honest.values())
            for factor in FACTORS:
                rises, deltas = 0, []
                for e in range(len(true)):
                    claims = [c * factor if i == e else c for i, c in enumerate(true)]
                    claimed = phi(weights_for(weighting, claims, cap))
                    delta = shares(claimed)[e] - honest_share[e]
                    rises += delta > 1e-9
                    deltas.append(delta)
                    detail.add_row(
                        str(round_), weighting, str(e), str(true[e]), f"{factor}x",
                        f"{honest[e]:+.4f}", f"{claimed[e]:+.4f}",
                        f"{honest_share[e]:.1%}", f"{shares(claimed)[e]:.1%}",
                    )  # fmt: skip
                summary.add_row(
                    str(round_), weighting, f"{factor}x", f"{rises}/{len(true)}",
                    f"{100 * sum(deltas) / len(deltas):+.1f} pp",
                    f"{100 * max(deltas):+.1f} pp", f"{grand:+.4f}",
                )  # fmt: skip
        previous = aggregate(previous, updates)
    console.print(f"true sample counts {true}, cap {cap}")
    console.print(detail)
    console.print(summary)


if __name__ == "__main__":
    main()
