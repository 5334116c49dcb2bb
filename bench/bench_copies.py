"""How close honest updates come to each other, against near copies: the copy threshold's margin.

Real LoRA updates on the tiny model: `--edges` non-IID edges as `edgetune federation` builds them,
plus one "twin" that holds exactly edge 0's data but trains with another seed (the honest pair
most likely to look alike; same data and same seed gives byte-identical bytes, which the contract
refuses outright). Over `--rounds` FedAvg rounds, every ordered pair's relative distance
||dU_j - dU_i|| / ||dU_i|| (what `near_copies` compares with the threshold) is measured, and so is
that of copies: dU_i plus Gaussian noise of relative norm eps, and dU_i scaled by (1 + eps).

Then the decisive honest case, by shard size: three edges holding the same `size` examples, each
training with its own seed (40 steps of 16). At or below one batch, training is full-batch and
the seed changes nothing: the updates are identical, as indistinguishable from a copy as they
are (and byte-identical ones are refused by the contract anyway).

Last, what a copy that escapes detection earns: Shapley values (the agent's utility, edge 0 as
validator) of three honest updates, then of the same three plus a copy of the first with relative
noise 0.1, 0.3 and 1; and whether comparing what the validator sees instead of parameters (the
change of each validation example's loss) would tell honest pairs from noisy copies.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_copies.py [--edges 6] [--rounds 3] [--seed 0]
"""

import argparse
import itertools
import math
from dataclasses import replace

import numpy as np
import torch
from real_round import federation, validator_utility
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.contribution import COPY_THRESHOLD, exact_shapley, relative_distance
from edgetune.learning import aggregate, triage_examples, update_delta
from edgetune.learning.evaluate import _sequence_nll  # per-example losses, for one table only

NOISE_LEVELS = (1e-3, 1e-2, 1e-1)


def with_delta(previous_global: dict, delta: np.ndarray, like: dict) -> dict:
    """The float32 update whose change from `previous_global` is `delta` (keys as in `like`)."""
    out, offset = {}, 0
    for key in sorted(like):
        size = like[key].numel()
        part = delta[offset : offset + size].reshape(like[key].shape)
        out[key] = torch.from_numpy((previous_global[key].double().numpy() + part).astype("f4"))
        offset += size
    return out


def noisy(delta: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=delta.shape)
    return delta + noise * (eps * np.linalg.norm(delta) / np.linalg.norm(noise))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha (100: ~IID)")
    parser.add_argument("--steps", type=int, default=40, help="local training steps")
    parser.add_argument("--no-pay", action="store_true", help="skip the undetected-copy table")
    args = parser.parse_args()
    fed = federation(args.edges, args.seed, args.alpha, twins=[0], steps=args.steps)
    twin = args.edges  # index of edge 0's twin
    rng = np.random.default_rng(args.seed)
    table = Table(
        box=box.MARKDOWN,
        title="Relative distance ||dU_j - dU_i|| / ||dU_i|| (min over ordered pairs)",
        caption=(
            f"{args.edges} edges (alpha {args.alpha}, {args.steps} steps, seed {args.seed}) "
            f"+ 1 twin of edge 0; threshold {COPY_THRESHOLD}"
        ),
    )
    for name in ("round", "non-IID honest min", "twin pair min", "honest median"):
        table.add_column(name, justify="right")
    for eps in NOISE_LEVELS:
        table.add_column(f"noise {eps:g} max", justify="right")
    table.add_column("scaled 1.1", justify="right")
    global_adapter = fed.initial_global
    kept = None
    for round_ in range(1, args.rounds + 1):
        updates = fed.train_round(global_adapter, round_)
        deltas = [update_delta(global_adapter, u) for u in updates]
        pairs = {
            (i, j): relative_distance(deltas[j], deltas[i])
            for i, j in itertools.permutations(range(len(deltas)), 2)
        }
        non_iid = [d for (i, j), d in pairs.items() if twin not in (i, j)]
        twins = [pairs[0, twin], pairs[twin, 0]]
        copies = {
            eps: max(
                relative_distance(
                    update_delta(
                        global_adapter, with_delta(global_adapter, noisy(d, eps, rng), updates[0])
                    ),
                    d,
                )
                for d in deltas
            )
            for eps in NOISE_LEVELS
        }
        scaled = max(relative_distance(1.1 * d, d) for d in deltas)
        table.add_row(
            str(round_),
            f"{min(non_iid):.3f}",
            f"{min(twins):.3f}",
            f"{float(np.median(list(pairs.values()))):.3f}",
            *(f"{copies[eps]:.4f}" for eps in NOISE_LEVELS),
            f"{scaled:.3f}",
        )
        if round_ == 1:
            kept = (global_adapter, updates, deltas)
        global_adapter = aggregate(global_adapter, updates)
    console = Console(width=200)
    console.print(table)
    console.print(twins_by_shard_size(fed, args.seed))
    if not args.no_pay:
        console.print(undetected_copy_pay(fed, *kept, rng))
        console.print(functional_distances(fed, *kept, twin, rng))


def functional_distances(fed, previous_global, updates, deltas, twin: int, rng) -> Table:
    """The same comparison in what the validator can see: each update's change of the per-example
    validation losses (edge 0's data), honest pairs against noisy copies."""
    examples = [(e.prompt, e.response) for e in fed.edges[0].learner.validation_examples]

    def losses(update: dict) -> np.ndarray:
        fed.adapted.set_adapter({**previous_global, **update})
        return np.array([nll for nll, _ in _sequence_nll(fed.adapted, examples, 64, 128)])

    base = losses({})
    change = [losses(u) - base for u in updates]
    pairs = {
        (i, j): relative_distance(change[j], change[i])
        for i, j in itertools.permutations(range(len(change)), 2)
    }
    table = Table(box=box.MARKDOWN, title="Relative distance of per-example loss changes, round 1")
    for name in ("pair", "min", "max"):
        table.add_column(name, justify="right")
    honest = [d for (i, j), d in pairs.items() if twin not in (i, j)]
    table.add_row("non-IID honest", f"{min(honest):.4f}", f"{max(honest):.4f}")
    twins = [pairs[0, twin], pairs[twin, 0]]
    table.add_row("twin pair", f"{min(twins):.4f}", f"{max(twins):.4f}")
    for eps in (0.01, 0.1, 0.3, 1.0):
        gaps = [
            relative_distance(
                losses(with_delta(previous_global, noisy(d, eps, rng), updates[i])) - base,
                change[i],
            )
            for i, d in enumerate(deltas)
        ]
        table.add_row(f"copy, noise {eps:g}", f"{min(gaps):.4f}", f"{max(gaps):.4f}")
    return table


def twins_by_shard_size(fed, seed: int) -> Table:
    """Min/max relative distance between same-data updates trained with three seeds."""
    table = Table(box=box.MARKDOWN, title="Same data, different seeds: distance by shard size")
    for name in ("shard size", "min", "max"):
        table.add_column(name, justify="right")
    pool = triage_examples(600, seed=seed + 7)
    learner = fed.edges[0].learner
    for size in (16, 17, 18, 20, 24, 32, 64, 128, 256):
        deltas = []
        for k in range(3):
            twin = replace(
                learner, train_examples=pool[:size], config=replace(learner.config, seed=100 * k)
            )
            update = twin.train(fed.initial_global, 1)
            deltas.append(update_delta(fed.initial_global, update))
        gaps = [relative_distance(a, b) for a, b in itertools.permutations(deltas, 2)]
        table.add_row(str(size), f"{min(gaps):.4f}", f"{max(gaps):.4f}")
    return table


def undetected_copy_pay(fed, previous_global, updates, deltas, rng) -> Table:
    """Shapley values of 3 honest updates, then with a noisy copy of the first (A) added."""
    metric = fed.edges[0].learner.metric
    honest = updates[1:4]
    table = Table(
        box=box.MARKDOWN,
        title="Shapley values (nats, round 1) when a noisy copy of update A goes undetected",
    )
    for name in ("set", "A", "B", "C", "copy of A", "A + copy", "total"):
        table.add_column(name, justify="right")
    alone = exact_shapley(range(3), validator_utility(metric, previous_global, honest)).values
    table.add_row(
        "honest only",
        *(f"{alone[i]:.4f}" for i in range(3)),
        "-",
        f"{alone[0]:.4f}",
        f"{math.fsum(alone.values()):.4f}",
    )
    for eps in (0.1, 0.3, 1.0):
        copy = with_delta(previous_global, noisy(deltas[1], eps, rng), updates[1])
        game = validator_utility(metric, previous_global, [*honest, copy])
        both = exact_shapley(range(4), game).values
        table.add_row(
            f"+ copy, noise {eps:g}",
            *(f"{both[i]:.4f}" for i in range(4)),
            f"{both[0] + both[3]:.4f}",
            f"{math.fsum(both.values()):.4f}",
        )
    return table


if __name__ == "__main__":
    main()
