"""Issue 10's schedules chosen on a validation split: every arm's stopping point is picked by
its accuracy on a validation set distinct from the test set, never by the test set.

Same scenario as `bench_case_remedies.py` (whose functions this reuses). Each arm is scored at
checkpoints on the validation set (20 cases per finding, seed + 777; its first 8 per finding,
the protocol's audit-set size, are the 8-per-class split) and on the test set: the alone arms
(each hospital, seed i + 1) and the pooled arm every 30 steps, a fresh AdamW per 30-step chunk
as in `train_rounds`; the federated arms after every round. Per arm the reported figure is the
test accuracy at the checkpoint of best validation accuracy (ties: the earliest).

Run: .venv/bin/python bench/bench_case_schedule.py --arms alone pooled avgm0.5-10x30 \
    --json results/schedule.json           (arm by arm, every seed of an arm before the next)
     .venv/bin/python bench/bench_case_schedule.py --table results/schedule.json
Figures: docs/label-skew.md, "Schedules chosen on a validation split".
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_case_remedies import (
    Remedy,
    _config,
    add_scenario_arguments,
    scenario,
    score,
    server_step,
)

from edgetune.casestudy.arms import SHORT_ANSWERS, Cases, load_adapted, prepare_base, to_cases
from edgetune.casestudy.hospitals import balanced_test_set
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.learning import initial_global_adapter
from edgetune.learning.vision.evaluate import predict_candidates
from edgetune.learning.vision.train import train_vlm_update

CHUNK = 30  # alone/pooled checkpoint interval, steps
ALONE_STEPS, POOLED_STEPS = 300, 1500
VAL_PER_CLASS, SMALL_VAL_PER_CLASS = 20, 8

SCHEDULES = {
    r.name: r
    for r in (
        Remedy("avgm0.5-10x30", steps=10, rounds=30, momentum=0.5),
        Remedy("fedavg-10x30", steps=10, rounds=30),
        Remedy("avgm0.7-10x30", steps=10, rounds=30, momentum=0.7),
        Remedy("avgm0.5-5x40", steps=5, rounds=40, momentum=0.5),
        Remedy("avgm0.5-lr1.5-10x30", steps=10, rounds=30, momentum=0.5, server_lr=1.5),
        Remedy("fedavg-lr2-10x30", steps=10, rounds=30, server_lr=2.0),
    )
}


class Seed:
    """One seed's scenario, model and evaluation sets, built once and shared by its arms."""

    def __init__(self, args: argparse.Namespace, seed: int, base_dir: Path) -> None:
        self.settings, self.hospital_seed, self.hospitals = scenario(args, seed)
        size = self.settings.image_size
        self.test = to_cases(
            "test", balanced_test_set(self.settings.test_per_class, seed + 99, size)
        )
        val = balanced_test_set(VAL_PER_CLASS, seed + 777, size)  # grouped by finding
        self.val = to_cases("val", val)
        self.small = [i for i in range(len(val)) if i % VAL_PER_CLASS < SMALL_VAL_PER_CLASS]
        self.adapted = load_adapted(base_dir, self.settings)

    def checkpoint(self, at: int, adapter: dict) -> dict:
        """Validation (20 and 8 per finding) and test accuracy of `adapter`, `at` steps or
        rounds in."""
        test = score(self.adapted, self.test, adapter)
        predicted = predict_candidates(self.adapted, self.val.samples, SHORT_ANSWERS, 32)
        hits = [p == s.label for p, s in zip(predicted, self.val.samples, strict=True)]
        return {
            "at": at,
            "val": float(np.mean(hits)),
            "val8": float(np.mean([hits[i] for i in self.small])),
            "test": test.accuracy,
            "test_per_finding": test.per_finding,
        }


def chunked(s: Seed, cases: Cases, steps: int, seed: int) -> list[dict]:
    """`steps` class-balanced steps on `cases` in chunks of CHUNK, each from the last adapter
    with a fresh optimizer and seed `seed * 1000 + chunk` (`train_rounds`' seeds); scored after
    every chunk."""
    adapter, points = dict(initial_global_adapter(s.adapted)), []
    for chunk in range(steps // CHUNK):
        config = s.settings.train_config(CHUNK, seed=seed * 1000 + chunk)
        update = train_vlm_update(s.adapted, adapter, cases.samples, config, cases.balanced_weights)
        adapter = {**adapter, **update.tensors}
        points.append(s.checkpoint((chunk + 1) * CHUNK, adapter))
    return points


def federate(s: Seed, remedy: Remedy) -> list[dict]:
    """`run_remedy`'s simulated federation (every hospital, every round), scored every round."""
    configs = {i: _config(s.adapted, h, s.settings, remedy) for i, h in enumerate(s.hospitals)}
    global_, before, points = initial_global_adapter(s.adapted), None, []
    for round_ in range(remedy.rounds):
        updates = [
            train_vlm_update(
                s.adapted,
                global_,
                h.samples,
                replace(configs[i], seed=s.settings.seed * 1000 + 100 * i + round_),
                h.balanced_weights,
            ).tensors
            for i, h in enumerate(s.hospitals)
        ]
        global_, before = server_step(global_, before, updates, remedy), global_
        points.append(s.checkpoint(round_ + 1, global_))
        p = points[-1]
        print(
            f"  {remedy.name} r{round_ + 1}: val {p['val8']:.3f} test {p['test']:.3f}", flush=True
        )
    return points


def run_arm(s: Seed, arm: str) -> dict:
    start = time.perf_counter()
    if arm == "alone":
        runs = [chunked(s, h, ALONE_STEPS, i + 1) for i, h in enumerate(s.hospitals)]
        result: dict = {"hospitals": runs}
    elif arm == "pooled":
        pooled = Cases("pooled", [x for h in s.hospitals for x in h.samples], [])
        result = {"points": chunked(s, pooled, POOLED_STEPS, 0)}
    else:
        result = {"points": federate(s, SCHEDULES[arm])}
    result["wall_s"] = time.perf_counter() - start
    print(f"seed {s.settings.seed} {arm}: {result['wall_s']:.0f} s", flush=True)
    return result


def chosen(points: list[dict], key: str = "val8") -> dict:
    """The checkpoint of best validation accuracy; ties go to the earliest."""
    return max(points, key=lambda p: (p[key], -p["at"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scenario_arguments(parser)
    parser.add_argument("--arms", nargs="+", default=["alone", "pooled"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="only print these results")
    args = parser.parse_args()
    if args.table:
        results: dict = {}
        for path in args.table:
            for seed, arms in json.loads(path.read_text())["seeds"].items():
                results.setdefault(seed, {}).update(arms)
        print_table(results)
        return
    torch.set_num_threads(1)
    base_dir = prepare_base(CaseStudySettings.quick_run())
    seeds = {seed: Seed(args, seed, base_dir) for seed in args.seeds}
    results = {str(seed): {} for seed in args.seeds}
    for arm in args.arms:  # every seed of one arm before the next arm
        for seed, s in seeds.items():
            results[str(seed)][arm] = run_arm(s, arm)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                saved = vars(args) | {"json": str(args.json)}
                args.json.write_text(json.dumps({"args": saved, "seeds": results}))
    print_table(results)


def rows(results: dict, key: str = "val8") -> list[tuple[str, list[dict], list[dict]]]:
    """Per arm present in every seed: (name, chosen checkpoint per seed, final per seed). Best
    alone is, per seed, the hospital whose chosen checkpoint scores highest on test (the
    strictest bar for collaboration), then the one the validation set would pick."""
    seeds = list(results.values())
    arms = [a for a in seeds[0] if all(a in r for r in seeds)]
    out = []
    if "alone" in arms:
        picks = [[(chosen(h, key), h[-1]) for h in r["alone"]["hospitals"]] for r in seeds]
        best = [max(p, key=lambda c: c[0]["test"]) for p in picks]
        by_val = [max(p, key=lambda c: c[0][key]) for p in picks]
        out.append(("best alone (test)", [b[0] for b in best], [b[1] for b in best]))
        out.append(("best alone (val)", [b[0] for b in by_val], [b[1] for b in by_val]))
    for arm in (a for a in arms if a != "alone"):
        points = [r[arm]["points"] for r in seeds]
        out.append((arm, [chosen(p, key) for p in points], [p[-1] for p in points]))
    return out


def print_table(results: dict) -> None:
    """Chosen checkpoint and its test accuracy per seed, mean ± sd, the final checkpoint's
    mean, the worst finding at the chosen one, and the targets (best alone + 0.05, 95% of
    pooled), for the 8- and the 20-per-class validation split."""
    for key in ("val8", "val"):
        table = rows(results, key)
        means = {name: np.mean([c["test"] for c in picks]) for name, picks, _ in table}
        bar_alone = means.get("best alone (test)", np.nan) + 0.05
        bar_pooled = 0.95 * means.get("pooled", np.nan)
        print(f"\nchosen on {key}; targets: >= {bar_alone:.3f} and >= {bar_pooled:.3f}")
        print(f"{'arm':<22}{'chosen at':>16}{'test at chosen':>24}   mean ± sd   final  worst")
        for name, picks, finals in table:
            tests = [c["test"] for c in picks]
            sd = np.std(tests, ddof=1) if len(tests) > 1 else 0.0
            at = "/".join(str(c["at"]) for c in picks)
            cells = " ".join(f"{t:.3f}" for t in tests)
            final = np.mean([f["test"] for f in finals])
            worst = np.mean([min(c["test_per_finding"].values()) for c in picks])
            met = "met" if np.mean(tests) >= max(bar_alone, bar_pooled) else ""
            line = f"{name:<22}{at:>16}{cells:>24}   {np.mean(tests):.3f} ± {sd:.3f}"
            print(f"{line}   {final:.3f}  {worst:.2f}  {met}")


if __name__ == "__main__":
    main()
