"""Issue 10's measurements, chain-free: a label-skewed case-study scenario with headroom, and
federated remedies for label skew against plain FedAvg on it.

The collaborative arm is simulated: every round each hospital trains from the global adapter
(`train_vlm_update`, class-balanced on its labels, as the protocol's edges do) and the new
global is `aggregate` of all updates (what the contract's round gives when validators include
every update) or, with --exclude-noisy, of all but the noisy hospital's (validators leaving it
out). Base, alone and pooled arms are the case study's (`train_rounds`). Accuracy is candidate
scored on the case study's balanced test set, every round for the federated arms.

Run: .venv/bin/python bench/bench_case_remedies.py --seeds 0 1 2 \
    --remedies fedavg prox0.1 --json remedies.json     (about 2 min per remedy and seed)
     .venv/bin/python bench/bench_case_remedies.py --table remedies.json other.json
Figures (5 hospitals of 200/160/120/100/80 cases, alpha 0.3, hospital 2 noisy at 0.6, seeds
0-2): docs/label-skew.md.
"""

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edgetune.casestudy.arms import (
    SHORT_ANSWERS,
    Cases,
    load_adapted,
    prepare_base,
    scenario_hospitals,
    to_cases,
    train_rounds,
)
from edgetune.casestudy.hospitals import balanced_test_set
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.xray import FINDINGS
from edgetune.learning import TrainConfig, initial_global_adapter
from edgetune.learning.aggregate import adam_aggregate, aggregate, momentum_aggregate
from edgetune.learning.evaluate import hit_rate
from edgetune.learning.restricted import lacking_answer_ids
from edgetune.learning.vision.evaluate import predict_candidates
from edgetune.learning.vision.model import VisionAdaptedModel
from edgetune.learning.vision.train import train_vlm_update


@dataclass(frozen=True)
class Remedy:
    """One federated variant: local steps x rounds, FedProx mu, restricted softmax over the
    findings a hospital lacks, FedAvgM server momentum and server learning rate, leaving the
    noisy hospital out."""

    name: str
    steps: int = 30
    rounds: int = 5
    prox_mu: float = 0.0
    restrict: bool = False
    momentum: float = 0.0
    server_lr: float = 1.0  # G(r-1) + server_lr * mean change + momentum * (G(r-1) - G(r-2))
    adam_lr: float = 0.0  # > 0: FedAdam's server step instead (momentum unused)
    exclude_noisy: bool = False


REMEDIES = {
    r.name: r
    for r in (
        Remedy("fedavg"),
        Remedy("fedavg-excl", exclude_noisy=True),
        Remedy("prox0.01", prox_mu=0.01),
        Remedy("prox0.1", prox_mu=0.1),
        Remedy("prox1", prox_mu=1.0),
        Remedy("restrict", restrict=True),
        Remedy("avgm0.5", momentum=0.5),
        Remedy("avgm0.9", momentum=0.9),
        Remedy("steps10x15", steps=10, rounds=15),
        Remedy("steps15x10", steps=15, rounds=10),
        Remedy("steps10x5", steps=10),
        Remedy("restrict-avgm0.5", restrict=True, momentum=0.5),
        Remedy("restrict-excl", restrict=True, exclude_noisy=True),
        Remedy("adam0.01", adam_lr=0.01),
        Remedy("adam0.03", adam_lr=0.03),
        Remedy("avgm0.9-steps10x15", momentum=0.9, steps=10, rounds=15),
        Remedy("avgm0.5-steps10x15", momentum=0.5, steps=10, rounds=15),
        Remedy("fedavg-30x10", rounds=10),  # twice the budget: is it convergence?
        Remedy("restrict-30x10", restrict=True, rounds=10),
        Remedy("restrict-steps10x15", restrict=True, steps=10, rounds=15),
        Remedy("restrict-avgm0.9", restrict=True, momentum=0.9),
    )
}


@dataclass
class Score:
    accuracy: float
    per_finding: dict[str, float]


@dataclass
class RemedyRun:
    remedy: Remedy
    by_round: list[Score] = field(default_factory=list)
    wall_s: float = 0.0


def score(adapted: VisionAdaptedModel, test: Cases, adapter: dict) -> Score:
    adapted.set_adapter(adapter)
    predicted = predict_candidates(adapted, test.samples, SHORT_ANSWERS, 32)
    labels = [s.label for s in test.samples]
    per = {
        f: float(np.mean([p == f for p, t in zip(predicted, labels, strict=True) if t == f]))
        for f in FINDINGS
    }
    return Score(hit_rate(predicted, labels), per)


def run_remedy(
    adapted: VisionAdaptedModel,
    hospitals: list[Cases],
    test: Cases,
    settings: CaseStudySettings,
    remedy: Remedy,
) -> RemedyRun:
    """Simulated federation: each round every (included) hospital trains from the global."""
    start = time.perf_counter()
    members = [
        (i, h) for i, h in enumerate(hospitals) if not (remedy.exclude_noisy and h.noise_rate > 0)
    ]
    configs = {i: _config(adapted, h, settings, remedy) for i, h in members}
    global_, before, adam = initial_global_adapter(adapted), None, None
    run = RemedyRun(remedy)
    for round_ in range(remedy.rounds):
        updates = [
            train_vlm_update(
                adapted,
                global_,
                h.samples,
                replace(configs[i], seed=settings.seed * 1000 + 100 * i + round_),
                h.balanced_weights,
            ).tensors
            for i, h in members
        ]
        if remedy.adam_lr:
            global_, adam = adam_aggregate(global_, updates, adam, remedy.adam_lr)
        else:
            global_, before = server_step(global_, before, updates, remedy), global_
        run.by_round.append(score(adapted, test, global_))
        print(f"  {remedy.name} round {round_ + 1}: {run.by_round[-1].accuracy:.3f}", flush=True)
    run.wall_s = time.perf_counter() - start
    return run


def server_step(global_: dict, before: dict | None, updates: list[dict], remedy: Remedy) -> dict:
    """FedAvgM with a server learning rate: G(r) = G(r-1) + lr * (A - G(r-1)) + beta * (G(r-1) -
    G(r-2)), A the plain mean aggregate. Still a function of the last two globals and the
    round's updates only; lr 1 is exactly `momentum_aggregate`."""
    moved = momentum_aggregate(global_, before, updates, remedy.momentum)
    if remedy.server_lr == 1.0:
        return moved
    mean = aggregate(global_, updates)  # moved - mean is the momentum term alone
    return {
        k: (v.double() + (remedy.server_lr - 1) * (mean[k].double() - global_[k].double()))
        .float()
        .contiguous()
        for k, v in moved.items()
    }


def _config(
    adapted: VisionAdaptedModel, hospital: Cases, settings: CaseStudySettings, remedy: Remedy
) -> TrainConfig:
    lacking: tuple[tuple[int, ...], ...] = ()
    if remedy.restrict:  # what the hospital's own labels lack, not the images' truth
        labelled = {
            f for f, a in SHORT_ANSWERS.items() if any(s.answer == a for s in hospital.samples)
        }
        lacking = lacking_answer_ids(adapted.tokenizer, SHORT_ANSWERS, labelled)
    # The seed is set per hospital and round where the config is used.
    return settings.train_config(
        remedy.steps, seed=0, prox_mu=remedy.prox_mu, lacking_answers=lacking
    )


def scenario(args: argparse.Namespace, seed: int) -> tuple[CaseStudySettings, int, list[Cases]]:
    settings = CaseStudySettings(
        quick=True,
        hospitals=len(args.sizes),
        hospital_sizes=tuple(args.sizes),
        alpha=args.alpha,
        noisy_hospital=args.noisy,
        noise_rate=args.noise_rate,
        seed=seed,
        alone_rounds=args.local_rounds,
        alone_round_steps=30,
    )
    hospital_seed, hospitals = scenario_hospitals(settings)
    cases = [to_cases(h.name, h.samples, h.spec.noise_rate) for h in hospitals]
    return settings, hospital_seed, cases


def run_seed(
    args: argparse.Namespace, seed: int, base_dir: Path, save: Callable[[dict], None]
) -> dict:
    settings, hospital_seed, hospitals = scenario(args, seed)
    test = to_cases(
        "test", balanced_test_set(settings.test_per_class, seed + 99, settings.image_size)
    )
    adapted = load_adapted(base_dir, settings)
    counts = [{f: sum(s.label == f for s in h.samples) for f in FINDINGS} for h in hospitals]
    out: dict = {"seed": seed, "hospital_seed": hospital_seed, "class_counts": counts}
    print(f"seed {seed}: hospital seed {hospital_seed}, counts {counts}", flush=True)
    initial = initial_global_adapter(adapted)
    if not args.skip_local:
        out["local_steps"] = settings.alone_rounds * settings.alone_round_steps
        out["alone"] = []
        for i, h in enumerate(hospitals):
            start = time.perf_counter()
            adapter = train_rounds(adapted, initial, h, settings, settings.alone_round_steps, i + 1)
            out["alone"].append({**asdict(score(adapted, test, adapter)), "wall_s": _since(start)})
            print(f"  alone {h.name}: {out['alone'][-1]['accuracy']:.3f}", flush=True)
        start = time.perf_counter()
        pooled = Cases("pooled", [s for h in hospitals for s in h.samples], [])
        steps = settings.alone_round_steps * len(hospitals)
        adapter = train_rounds(adapted, initial, pooled, settings, steps, 0)
        out["pooled"] = {**asdict(score(adapted, test, adapter)), "wall_s": _since(start)}
        best = max(a["accuracy"] for a in out["alone"])
        out["headroom"] = out["pooled"]["accuracy"] - best
        print(f"  pooled {out['pooled']['accuracy']:.3f} headroom {out['headroom']:+.3f}")
    out["remedies"] = {}
    save(out)
    for name in args.remedies:
        run = run_remedy(adapted, hospitals, test, settings, REMEDIES[name])
        out["remedies"][name] = {
            "remedy": asdict(run.remedy),
            "by_round": [asdict(s) for s in run.by_round],
            "final": run.by_round[-1].accuracy,
            "wall_s": run.wall_s,
        }
        save(out)  # after every run: an interrupted bench keeps what it measured
    return out


def _since(start: float) -> float:
    return time.perf_counter() - start


def add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """The seeds and the label-skewed scenario `scenario` builds (both benches take them)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 160, 120, 100, 80])
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--noisy", type=int, default=2)
    parser.add_argument("--noise-rate", type=float, default=0.6)
    parser.add_argument("--local-rounds", type=int, default=5, help="alone/pooled rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scenario_arguments(parser)
    parser.add_argument("--remedies", nargs="*", default=["fedavg"], choices=sorted(REMEDIES))
    parser.add_argument("--skip-local", action="store_true", help="no alone/pooled arms")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="only print these results")
    args = parser.parse_args()
    if args.table:
        print_table(merge(args.table))
        return
    torch.set_num_threads(1)
    base_dir = prepare_base(CaseStudySettings.quick_run())
    results: list[dict] = []

    def save(partial: dict) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            settings = vars(args) | {"json": str(args.json)}
            args.json.write_text(json.dumps({"args": settings, "seeds": [*results, partial]}))

    for seed in args.seeds:
        results.append(run_seed(args, seed, base_dir, save))
    if args.remedies:
        print_table(results)


def merge(paths: list[Path]) -> list[dict]:
    """Seeds from several result files, one entry per seed: local arms and remedies united."""
    by_seed: dict[int, dict] = {}
    for path in paths:
        for run in json.loads(path.read_text())["seeds"]:
            seen = by_seed.setdefault(run["seed"], {"seed": run["seed"], "remedies": {}})
            seen["remedies"].update(run.pop("remedies"))
            seen.update(run)
    return [by_seed[seed] for seed in sorted(by_seed)]


def print_table(results: list[dict]) -> None:
    """Final accuracy per seed, mean ± sd, the worst finding's accuracy (mean over seeds) and
    the wall time; remedies are listed where every seed has them."""
    names = [n for n in REMEDIES if all(n in r["remedies"] for r in results)]
    rows = []
    if all("alone" in r for r in results):
        best = [max(r["alone"], key=lambda a: a["accuracy"]) for r in results]
        steps = results[0]["local_steps"]
        rows.append(("best alone", best, f"{steps} own"))
        pooled_steps = steps * len(results[0]["alone"])
        rows.append(("pooled", [r["pooled"] for r in results], f"{pooled_steps} pooled"))
    for name in names:
        remedy = REMEDIES[name]
        runs = [r["remedies"][name] for r in results]
        finals = [{**run["by_round"][-1], "wall_s": run["wall_s"]} for run in runs]
        rows.append((name, finals, f"{remedy.steps}x{remedy.rounds}"))
    seeds = "".join(f"{'seed ' + str(r['seed']):>8}" for r in results)
    print(f"\n{'arm':<20}{'steps':>11}{seeds}   mean ± sd   worst finding   wall s")
    for name, scores, budget in rows:
        values = [score["accuracy"] for score in scores]
        sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
        worst = np.mean([min(score["per_finding"].values()) for score in scores])
        wall = np.mean([score["wall_s"] for score in scores])
        cells = "".join(f"{v:>8.3f}" for v in values)
        spread = f"{np.mean(values):.3f} ± {sd:.3f}"
        print(f"{name:<20}{budget:>11}{cells}   {spread}{worst:>10.2f}{wall:>11.0f}")


if __name__ == "__main__":
    main()
