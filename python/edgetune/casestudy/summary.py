"""The case study across seeds: each arm's mean ± sd, the issue's targets checked seed by seed,
accuracy per finding and by round, and each hospital's reward against the leave-one-out value
of its data. `write_summary` writes `case-study.md` over one `CaseStudyResults` per seed; each
seed's own report (`write_report`) sits in `seed-N/` beside it."""

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from edgetune.casestudy.report import REPORT_NAME, finding_heatmap, save_figure
from edgetune.casestudy.results import ETHER, ArmResult, CaseStudyResults
from edgetune.casestudy.xray import FINDINGS

# Issue 10's targets for the headroom scenario.
MARGIN_OVER_BEST_ALONE = 0.05
SHARE_OF_POOLED = 0.95
HEADROOM = 0.10  # pooled - best alone that makes the scenario worth collaborating in

SUMMARY_FIGURES = {
    "arms": "case-study-accuracy-per-arm.png",
    "findings": "case-study-accuracy-per-finding.png",
    "rounds": "case-study-accuracy-by-round.png",
    "rewards": "case-study-reward-vs-data-value.png",
}


@dataclass(frozen=True)
class SeedVerdict:
    """One seed against the targets."""

    seed: int
    best_alone: float
    collaborative: float
    pooled: float
    rejected_rounds: tuple[int, ...]
    noisy_earns_least: bool | None  # None: no noisy hospital, or no rewards

    @property
    def margin(self) -> float:
        return self.collaborative - self.best_alone

    @property
    def share_of_pooled(self) -> float:
        return self.collaborative / self.pooled if self.pooled else float("nan")

    @property
    def headroom(self) -> float:
        return self.pooled - self.best_alone

    @property
    def met(self) -> dict[str, bool]:
        """Each target, by name: met or not."""
        return {
            f"beats best alone by {MARGIN_OVER_BEST_ALONE}": self.margin >= MARGIN_OVER_BEST_ALONE,
            f"{SHARE_OF_POOLED:.0%} of pooled": self.share_of_pooled >= SHARE_OF_POOLED,
            "every round consensus": not self.rejected_rounds,
            "noisy hospital earns least": bool(self.noisy_earns_least),
        }


def seed_verdict(run: CaseStudyResults) -> SeedVerdict:
    if run.collaborative is None or run.pool is None:
        raise ValueError(f"seed {run.settings.seed} has no collaborative arm to judge")
    rewards = [h.reward_wei for h in run.hospitals]
    noisy = [h.reward_wei for h in run.hospitals if h.noisy]
    least = None
    if noisy and None not in rewards:
        others = [h.reward_wei for h in run.hospitals if not h.noisy]
        least = max(noisy) < min(others) if others else True
    return SeedVerdict(
        run.settings.seed,
        best_alone(run).accuracy,
        run.collaborative.accuracy,
        run.pooled.accuracy,
        tuple(run.pool.rejected_rounds),
        least,
    )


def best_alone(run: CaseStudyResults) -> ArmResult:
    return max(run.alone, key=lambda a: a.accuracy)


def summary_arms(run: CaseStudyResults) -> dict[str, ArmResult]:
    """The arms compared across seeds (hospitals differ by seed, so alone is its best)."""
    arms = {"base": run.base, "best alone": best_alone(run)}
    if run.collaborative:
        arms["collaborative"] = run.collaborative
    arms["pooled"] = run.pooled
    return arms


def write_summary(runs: list[CaseStudyResults], out_dir: Path) -> Path:
    """`case-study.md` and its figures in `out_dir`, over `runs` (one per seed, each with its
    collaborative arm); returns the markdown's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = [seed_verdict(run) for run in runs]
    _arm_bars(runs, out_dir / SUMMARY_FIGURES["arms"])
    _finding_heatmap(runs, out_dir / SUMMARY_FIGURES["findings"])
    _rounds_figure(runs, out_dir / SUMMARY_FIGURES["rounds"])
    _reward_scatter(runs, out_dir / SUMMARY_FIGURES["rewards"])
    sections = [
        _header(runs),
        _arms_table(runs),
        _targets_table(verdicts),
        _finding_table(runs),
        _rounds_table(runs),
        _reward_table(runs),
        _walls_and_seeds(runs),
    ]
    path = out_dir / REPORT_NAME
    path.write_text("\n".join(sections))
    return path


def _header(runs: list[CaseStudyResults]) -> str:
    s = runs[0].settings
    mode = "quick" if s.quick else "full"
    sizes = "/".join(str(n) for n in s.hospital_sizes)
    noisy = f"hospital-{s.noisy_hospital} labels {s.noise_rate:.0%} of its cases wrongly"
    seeds = ", ".join(str(r.settings.seed) for r in runs)
    return (
        f"# Case study: collaborative chest X-ray diagnostic dialogues ({mode} run, "
        f"{s.scenario} scenario)\n\n"
        f"{s.hospitals} hospitals of {sizes} cases (Dirichlet alpha = {s.alpha}; {noisy}) "
        f"fine-tune the pinned base VLM (language model: {s.language_model}) with LoRA, over "
        f"seeds {seeds}. Each arm starts from the same initial adapter and is scored on the "
        f"same balanced test set of its seed ({s.test_per_class} cases per finding). Alone: "
        f"{s.alone_rounds} x {s.alone_round_steps} steps per hospital; pooled: all data, as "
        f"many steps as all hospitals alone together; collaborative: {s.rounds} on-chain rounds "
        f"of {s.steps_per_round} local steps per hospital, FedAvgM beta = {s.server_momentum} "
        f"(docs/label-skew.md measures the remedies and the schedule). Every figure below is "
        f"regenerated by the command at the end; each seed's own report, with its dialogues "
        f"and radiographs, is linked there.\n"
    )


def _spread(values: list[float]) -> str:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {sd:.3f}"


def _arms_table(runs: list[CaseStudyResults]) -> str:
    rows = [
        "## Accuracy per arm (mean ± sd over seeds)\n",
        "| arm | accuracy | generated accuracy | ROUGE-L (dialogue) | complete answers |",
        "|---|---:|---:|---:|---:|",
    ]
    by_arm: dict[str, list[ArmResult]] = {}
    for run in runs:
        for name, arm in summary_arms(run).items():
            by_arm.setdefault(name, []).append(arm)
    for name, arms in by_arm.items():
        cells = [
            _spread([a.accuracy for a in arms]),
            _spread([a.generated_accuracy for a in arms]),
            _spread([a.rouge_l_dialogue for a in arms]),
            _spread([a.complete_answers for a in arms]),
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\n![accuracy per arm]({SUMMARY_FIGURES['arms']})\n"


def _targets_table(verdicts: list[SeedVerdict]) -> str:
    names = list(verdicts[0].met)
    rows = [
        "## The targets, seed by seed\n",
        "| seed | best alone | pooled | headroom | collaborative | margin | share of pooled | "
        "rounds without consensus | noisy earns least | targets met |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for v in verdicts:
        met = [n for n in names if v.met[n]]
        rows.append(
            f"| {v.seed} | {v.best_alone:.3f} | {v.pooled:.3f} | {v.headroom:+.3f} | "
            f"{v.collaborative:.3f} | {v.margin:+.3f} | {v.share_of_pooled:.0%} | "
            f"{', '.join(map(str, v.rejected_rounds)) or 'none'} | "
            f"{_yes(v.noisy_earns_least)} | {len(met)} of {len(names)} |"
        )
    lines = ["\n".join(rows), ""]
    for name in names:
        missed = [v.seed for v in verdicts if not v.met[name]]
        state = "met in every seed" if not missed else f"**missed** in seeds {missed}"
        lines.append(f"- {name}: {state}.")
    thin = [v.seed for v in verdicts if v.headroom < HEADROOM]
    if thin:
        lines.append(
            f"- Headroom (pooled - best alone) is below {HEADROOM} in seeds {thin}: there the "
            f"scenario leaves collaboration little to win."
        )
    return "\n".join(lines) + "\n"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def _finding_table(runs: list[CaseStudyResults]) -> str:
    grid = _finding_grid(runs)
    rows = [
        "## Accuracy per finding (mean over seeds)\n",
        "| arm | " + " | ".join(FINDINGS) + " |",
        "|---|" + "---:|" * len(FINDINGS),
    ]
    rows += [f"| {arm} | " + " | ".join(f"{x:.2f}" for x in row) + " |" for arm, row in grid]
    return "\n".join(rows) + f"\n\n![accuracy per finding]({SUMMARY_FIGURES['findings']})\n"


def _finding_grid(runs: list[CaseStudyResults]) -> list[tuple[str, list[float]]]:
    names = list(summary_arms(runs[0]))
    return [
        (
            name,
            [
                float(np.mean([summary_arms(r)[name].per_finding.get(f, np.nan) for r in runs]))
                for f in FINDINGS
            ],
        )
        for name in names
    ]


def _rounds_table(runs: list[CaseStudyResults]) -> str:
    rounds = sorted({r for run in runs for r, _ in run.by_round})
    head = " | ".join(f"seed {run.settings.seed}" for run in runs)
    rows = [
        "## Collaborative accuracy by round (test set)\n",
        f"| round | {head} |",
        "|---:|" + "---:|" * len(runs),
    ]
    for r in rounds:
        cells = [f"{dict(run.by_round).get(r, float('nan')):.3f}" for run in runs]
        rows.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\n![accuracy by round]({SUMMARY_FIGURES['rounds']})\n"


def _reward_table(runs: list[CaseStudyResults]) -> str:
    rows = [
        "## Reward against the value of each hospital's data\n",
        "A hospital's data value is its leave-one-out value: the pooled arm's test accuracy "
        "minus that of the same training without its cases. The reward is what the contract "
        "credited it over the task (trainer and validator shares).\n",
        "| seed | hospital | cases | noisy | leave-one-out value | reward (ETH) |",
        "|---:|---|---:|---|---:|---:|",
    ]
    notes = []
    for run in runs:
        for h in run.hospitals:
            value = "-" if h.loo_value is None else f"{h.loo_value:+.3f}"
            reward = "-" if h.reward_wei is None else f"{h.reward_wei / ETHER:.6f}"
            rows.append(
                f"| {run.settings.seed} | {h.name} | {h.size} | {'yes' if h.noisy else 'no'} "
                f"| {value} | {reward} |"
            )
        rho = _rank_correlation(run)
        if rho is not None:
            notes.append(f"seed {run.settings.seed}: {rho:+.2f}")
    text = "\n".join(rows) + "\n"
    if notes:
        text += f"\nSpearman rank correlation of reward with data value: {', '.join(notes)}.\n"
    return text + f"\n![reward against data value]({SUMMARY_FIGURES['rewards']})\n"


def _rank_correlation(run: CaseStudyResults) -> float | None:
    pairs = [(h.loo_value, h.reward_wei) for h in run.hospitals]
    if any(v is None or r is None for v, r in pairs):
        return None
    return spearman([p[0] for p in pairs], [p[1] for p in pairs])


def spearman(xs: list, ys: list) -> float | None:
    """Spearman's rank correlation of two equally long lists; None below 3 points or when
    either list is constant."""
    if len(xs) < 3:
        return None
    x_ranks, y_ranks = _ranks(xs), _ranks(ys)
    if x_ranks.std() == 0 or y_ranks.std() == 0:
        return None
    return float(np.corrcoef(x_ranks, y_ranks)[0, 1])


def _ranks(xs: list) -> np.ndarray:
    """Ranks with ties averaged (Spearman's rho is Pearson's r of these). Written here because
    scipy is not installed and this is all of it that is needed."""
    order = np.asarray(xs, dtype=float)
    return np.array([np.mean(np.flatnonzero(np.sort(order) == x)) for x in order])


def _walls_and_seeds(runs: list[CaseStudyResults]) -> str:
    stages = list(runs[0].wall_times)
    rows = [
        "## Wall times (seconds) and each seed's report\n",
        "| seed | " + " | ".join(stages) + " | total | report |",
        "|---:|" + "---:|" * (len(stages) + 1) + "---|",
    ]
    for run in runs:
        walls = run.wall_times
        cells = [f"{walls.get(s, 0.0):.0f}" for s in stages]
        seed = run.settings.seed
        link = f"[seed-{seed}/{REPORT_NAME}](seed-{seed}/{REPORT_NAME})"
        rows.append(f"| {seed} | " + " | ".join(cells) + f" | {sum(walls.values()):.0f} | {link} |")
    s = runs[0].settings
    flags = ["--quick" if s.quick else "--full", f"--scenario {s.scenario}"]
    flags.append("--seeds " + " ".join(str(r.settings.seed) for r in runs))
    if s.language_model != "tiny":
        flags.append(f"--language-model {s.language_model}")
    return (
        "\n".join(rows)
        + "\n\n## How to reproduce\n\n"
        + f"```\nHF_HUB_OFFLINE=1 edgetune case-study {' '.join(flags)}\n```\n"
    )


def _colours(count: int) -> list:
    return [matplotlib.colormaps["tab10"](i % 10) for i in range(count)]


def _arm_bars(runs: list[CaseStudyResults], path: Path) -> None:
    names = list(summary_arms(runs[0]))
    values = [[summary_arms(r)[n].accuracy for r in runs] for n in names]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    sds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
    ax.bar(names, [np.mean(v) for v in values], yerr=sds, capsize=4, color=_colours(len(names)))
    for i, v in enumerate(values):
        ax.scatter([i] * len(v), v, color="k", s=10, zorder=3)
    ax.axhline(1 / len(FINDINGS), color="grey", linestyle="--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Accuracy per arm: mean ± sd over {len(runs)} seeds (dots: seeds)")
    ax.legend(fontsize="small")
    save_figure(fig, path)


def _finding_heatmap(runs: list[CaseStudyResults], path: Path) -> None:
    grid = _finding_grid(runs)
    title = "Accuracy per finding and arm, mean over seeds"
    finding_heatmap([name for name, _ in grid], np.array([row for _, row in grid]), title, path)


def _rounds_figure(runs: list[CaseStudyResults], path: Path) -> None:
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.subplots()
    for colour, run in zip(_colours(len(runs)), runs, strict=True):
        rounds, accuracy = zip(*run.by_round, strict=True)
        seed = run.settings.seed
        ax.plot(rounds, accuracy, marker="o", markersize=3, color=colour, label=f"seed {seed}")
        ax.axhline(best_alone(run).accuracy, color=colour, linestyle=":", linewidth=1)
        ax.axhline(run.pooled.accuracy, color=colour, linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title("Collaborative accuracy by round (dotted: best alone, dashed: pooled)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _reward_scatter(runs: list[CaseStudyResults], path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for colour, run in zip(_colours(len(runs)), runs, strict=True):
        points = [h for h in run.hospitals if h.loo_value is not None and h.reward_wei is not None]
        for h in points:
            marker = "X" if h.noisy else "o"
            ax.scatter(h.loo_value, h.reward_wei / ETHER, color=colour, marker=marker, s=40)
        ax.scatter([], [], color=colour, label=f"seed {run.settings.seed}")
    ax.scatter([], [], color="grey", marker="X", label="noisy labels")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("leave-one-out data value (pooled test accuracy)")
    ax.set_ylabel("on-chain reward (ETH)")
    ax.set_title("Reward against the value of a hospital's data")
    ax.legend(fontsize=7)
    save_figure(fig, path)
