"""How often do honest validators split their vote? In v1 each validator chose the included
set from its own scores, and a score near the harm tolerance made validators back different
aggregates. In v2 the contract fixes the included set from the stage-1 medians, so every honest
validator should attest the same (hash, CID). This runs in-process federations over several
seeds and tolerances and counts rounds whose revealed attestations named more than one
candidate. Prints a table; not a test.

    .venv/bin/python bench/bench_splits.py [--seeds 4] [--edges 4] [--rounds 10] [--tolerances 0.1]
"""

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgetune.agent.federation import FederationConfig, run_in_process
from edgetune.learning import TrainConfig


def count_splits(result) -> tuple[int, int, int]:
    """(rounds, rounds whose votes named several candidates, rejected rounds)."""
    contract, start = result.owner.contract, result.deployment_block
    events = contract.events.AttestationRevealed()
    votes = [log.args for log in events.get_logs(from_block=start)]
    finalized = [log.args for log in contract.events.RoundFinalized().get_logs(from_block=start)]
    split = sum(1 for f in finalized if len({v.candidate for v in votes if v.round == f.round}) > 1)
    return len(finalized), split, sum(1 for f in finalized if not f.accepted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--edges", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--poisoners", type=int, nargs="+", default=[0, 1])
    # 0.1: the case study's tolerance, where v1 lost a round to a split.
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.1])
    args = parser.parse_args()
    table = Table(title=f"vote splits among honest validators ({args.edges} edges)")
    for column in (
        "harm tolerance",
        "poisoners",
        "runs",
        "rounds",
        "split rounds",
        "rejected rounds",
        "seconds",
    ):
        table.add_column(column, justify="right")
    for tolerance in args.tolerances:
        for poisoners in args.poisoners:
            totals, started = [0, 0, 0], time.perf_counter()
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as workdir:
                    config = FederationConfig(
                        edges=args.edges,
                        rounds=args.rounds,
                        poisoners=poisoners,
                        seed=seed,
                        harm_tolerance=tolerance,
                        train=TrainConfig(steps=args.steps, seed=seed),
                        workdir=Path(workdir),
                    )
                    counts = count_splits(run_in_process(config, log=lambda _: None))
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
            elapsed = time.perf_counter() - started
            table.add_row(
                f"{tolerance:g}",
                str(poisoners),
                str(args.seeds),
                *map(str, totals),
                f"{elapsed:.0f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
