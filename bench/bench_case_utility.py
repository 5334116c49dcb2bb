"""Which Shapley utility pays the case study's hospitals for the value of their data?

The committed headroom run pays by diagnosis accuracy on each validator's 40 audit cases, and
the noisy hospital never earns least (docs/case-study.md). This bench replays the collaborative
arm's schedule chain-free (FedAvgM, the quick run's rounds, steps and momentum; every update
included) and, every round, scores the 31 coalitions of the round's updates on validator
audit sets built as `run_case_study` builds them, under utilities all read from the same
candidate NLLs: accuracy (today's), the mean probability of the true candidate (softmax over
the 5 candidates) and its mean log-probability clipped at log 0.01. Per utility: each round's
trainer share in proportion to max(median Shapley, 0), summed over rounds, against the
leave-one-out data values of docs/case-study.md (read from its table, not recomputed).

Run: .venv/bin/python bench/bench_case_utility.py --seeds 0 --json results/utility-0.json
     .venv/bin/python bench/bench_case_utility.py --table results/utility-*.json
Figures: docs/label-skew.md, "Which utility pays for data value".
"""

import argparse
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_case_remedies import add_scenario_arguments, scenario

from edgetune.casestudy.arms import SHORT_ANSWERS, load_adapted, prepare_base, to_cases
from edgetune.casestudy.hospitals import balanced_test_set
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.summary import spearman
from edgetune.contribution.shapley import exact_shapley
from edgetune.learning import initial_global_adapter
from edgetune.learning.aggregate import coalition_adapter, momentum_aggregate
from edgetune.learning.vision.evaluate import candidate_nll, default_max_length
from edgetune.learning.vision.train import train_vlm_update

UTILITIES = ("accuracy", "true-probability", "clipped-log-probability")
LOO_TABLE = Path(__file__).resolve().parents[1] / "docs" / "case-study.md"
_LOO_ROW = re.compile(r"^\| (\d+) \| hospital-(\d+) \| \d+ \| (?:yes|no) \| ([+-][\d.]+) \|")


def utilities(nll: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Each utility's value of one model, from its (cases x candidates) answer NLLs."""
    logp = -nll - np.logaddexp.reduce(-nll, axis=1, keepdims=True)
    true = logp[np.arange(len(truth)), truth]
    return {
        "accuracy": float(np.mean(nll.argmin(axis=1) == truth)),
        "true-probability": float(np.mean(np.exp(true))),
        "clipped-log-probability": float(np.mean(np.maximum(true, np.log(0.01)))),
    }


def run_seed(args: argparse.Namespace, seed: int, base_dir: Path) -> dict:
    settings, _, hospitals = scenario(args, seed)
    adapted = load_adapted(base_dir, settings)
    answers, labels = list(SHORT_ANSWERS.values()), list(SHORT_ANSWERS)
    audits = []
    for i in args.validators:
        cases = balanced_test_set(
            settings.validation_per_class, settings.seed + 500 + i, settings.image_size
        )
        samples = to_cases(f"validation-{i}", cases).samples
        audits.append((samples, np.array([labels.index(s.label) for s in samples])))
    max_length = default_max_length(adapted)

    def values(adapter: dict) -> list[dict[str, float]]:
        adapted.set_adapter(adapter)
        out = []
        for samples, truth in audits:
            nll = np.array(candidate_nll(adapted, samples, answers, 32, max_length))
            out.append(utilities(nll, truth))
        return out

    train = settings.train_config(settings.steps_per_round, seed=settings.seed)
    global_, before = initial_global_adapter(adapted), None
    rounds = []
    for round_ in range(settings.rounds):
        start = time.perf_counter()
        updates = [
            train_vlm_update(
                adapted,
                global_,
                h.samples,
                replace(train, seed=train.seed + 100 * i + round_),
                h.balanced_weights,
            ).tensors
            for i, h in enumerate(hospitals)
        ]
        players = list(range(len(updates)))
        table = {
            frozenset(s): values(coalition_adapter(global_, updates, s))
            for s in _coalitions(players)
        }
        medians = _medians(table, players, len(audits))
        global_, before = (
            momentum_aggregate(global_, before, updates, settings.server_momentum),
            global_,
        )
        rounds.append({"medians": medians, "wall_s": time.perf_counter() - start})
        summary = " ".join(f"{m:+.3f}" for m in medians["accuracy"])
        print(f"seed {seed} round {round_ + 1}: accuracy medians {summary}", flush=True)
    return {"seed": seed, "noisy": args.noisy, "rounds": rounds}


def _medians(
    table: dict[frozenset, list[dict[str, float]]], players: list[int], audits: int
) -> dict[str, list[float]]:
    """Per utility, each player's median (over audit sets) exact Shapley value."""
    empty = table[frozenset()]
    out = {}
    for name in UTILITIES:
        per_audit = [
            exact_shapley(players, lambda s, a=a, n=name: table[s][a][n] - empty[a][n]).values
            for a in range(audits)
        ]
        out[name] = [float(np.median([v[j] for v in per_audit])) for j in players]
    return out


def _coalitions(players: list[int]) -> list[tuple[int, ...]]:
    return [tuple(p for p in players if mask >> p & 1) for mask in range(1 << len(players))]


def reward_shares(rounds: list[dict], utility: str) -> np.ndarray:
    """Summed per-round trainer shares, each round in proportion to max(median, 0)."""
    total = np.zeros(len(rounds[0]["medians"][utility]))
    for record in rounds:
        positive = np.maximum(np.array(record["medians"][utility]), 0.0)
        if positive.sum() > 0:
            total += positive / positive.sum()
    return total / len(rounds)


def loo_values(path: Path = LOO_TABLE) -> dict[int, list[float]]:
    """seed -> each hospital's leave-one-out value, from the committed summary's table."""
    out: dict[int, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        if match := _LOO_ROW.match(line):
            seed, hospital, value = int(match[1]), int(match[2]), float(match[3])
            out.setdefault(seed, {})[hospital] = value
    return {seed: [row[h] for h in sorted(row)] for seed, row in out.items()}


def print_table(results: list[dict]) -> None:
    loo = loo_values()
    print(
        "| seed | utility | reward share per hospital | noisy rank (1 = least) | Spearman vs LOO |"
    )
    print("|---:|---|---|---:|---:|")
    for result in results:
        for utility in UTILITIES:
            shares = reward_shares(result["rounds"], utility)
            rank = int(np.argsort(np.argsort(shares))[result["noisy"]]) + 1
            rho = spearman(list(shares), loo[result["seed"]]) if result["seed"] in loo else None
            cells = " / ".join(f"{s:.2f}" for s in shares)
            rho_text = "-" if rho is None else f"{rho:+.2f}"
            print(f"| {result['seed']} | {utility} | {cells} | {rank} | {rho_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scenario_arguments(parser)
    parser.add_argument("--validators", type=int, nargs="+", default=[0], help="audit sets")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="only print these results")
    args = parser.parse_args()
    if args.table:
        print_table([r for path in args.table for r in json.loads(path.read_text())])
        return
    torch.set_num_threads(1)
    base_dir = prepare_base(CaseStudySettings(quick=True))
    results = []
    for seed in args.seeds:
        results.append(run_seed(args, seed, base_dir))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results))
    print_table(results)


if __name__ == "__main__":
    main()
