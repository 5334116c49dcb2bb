"""Rendering a task's history for people: rich tables, JSON, and a matplotlib figure. The data
comes from `edgetune.chain.history`; nothing here reads the chain."""

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from edgetune.chain.history import TaskHistory

ETHER = 10**18


def ether(wei: int) -> str:
    return f"{wei / ETHER:.6f}"


def edges_table(history: TaskHistory, roles: Mapping[str, str] | None = None) -> Table:
    """One row per edge; `roles` (address -> role name) labels demo roles when known."""
    roles = roles or {}
    table = Table(
        title=f"task {history.task_id}: edges ({history.phase}, round "
        f"{history.current_round} of {history.rounds_planned})"
    )
    columns = (
        "edge",
        "role",
        "stake (ETH)",
        "rounds joined",
        "median score by round",
        "mean agreement",
        "trainer (ETH)",
        "validator (ETH)",
        "slashed (ETH)",
        "withdrawn (ETH)",
        "owed (ETH)",
    )
    for column in columns:
        left = column in ("edge", "role", "median score by round")
        table.add_column(column, justify="left" if left else "right")
    for edge in sorted(history.edges, key=lambda e: -e.earned):
        scores = " ".join(f"r{r}:{s:+.3f}" for r, s in sorted(edge.scores.items())) or "-"
        agreement = sum(edge.agreement.values()) / len(edge.agreement) if edge.agreement else 0.0
        table.add_row(
            f"{edge.address[:8]}…{edge.address[-4:]}",
            roles.get(edge.address, "-"),
            ether(edge.stake),
            str(len(edge.rounds_joined)),
            scores,
            f"{agreement:.2f}",
            ether(sum(edge.trainer_reward.values())),
            ether(sum(edge.validator_reward.values())),
            ether(edge.slashed),
            ether(edge.withdrawn),
            ether(edge.owed),
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        ether(sum(e.stake for e in history.edges)),
        "",
        "",
        "",
        ether(sum(sum(e.trainer_reward.values()) for e in history.edges)),
        ether(sum(sum(e.validator_reward.values()) for e in history.edges)),
        ether(sum(e.slashed for e in history.edges)),
        ether(sum(e.withdrawn for e in history.edges)),
        ether(sum(e.owed for e in history.edges)),
    )
    return table


def rounds_table(history: TaskHistory) -> Table:
    table = Table(title=f"task {history.task_id}: rounds (pool {ether(history.pool)} ETH)")
    for column in (
        "round",
        "outcome",
        "updates",
        "included",
        "attestations",
        "approving stake",
        "budget (ETH)",
        "paid (ETH)",
        "global model CID",
    ):
        table.add_column(column, justify="left" if column == "global model CID" else "right")
    for r in history.rounds:
        share = f"{r.approving_stake / r.attest_stake:.0%}" if r.attest_stake else "-"
        table.add_row(
            str(r.round),
            "accepted" if r.accepted else "rejected",
            str(r.updates),
            str(r.included),
            str(r.attestations),
            share,
            ether(r.budget),
            ether(r.paid),
            r.global_cid,
        )
    return table


def history_json(history: TaskHistory) -> str:
    data = asdict(history)
    for edge, record in zip(data["edges"], history.edges, strict=True):
        edge["earned"] = record.earned
    return json.dumps(data, indent=2)


def plot_rewards(history: TaskHistory, path: Path, roles: Mapping[str, str] | None = None) -> Path:
    """Cumulative reward per edge by round, and each edge's median score against its reward."""
    roles = roles or {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in history.rounds]
    figure, (cumulative, scatter) = plt.subplots(1, 2, figsize=(11, 4.2))
    for edge in history.edges:
        running, series = 0, [0.0]
        for round_ in rounds:
            running += edge.earned_in(round_)
            series.append(running / ETHER)
        label = edge.address[:10] + (f" ({roles[edge.address]})" if edge.address in roles else "")
        cumulative.plot([0, *rounds], series, marker="o", label=label)
        points = [(s, edge.trainer_reward.get(r, 0) / ETHER) for r, s in edge.scores.items()]
        if points:
            scatter.scatter(*zip(*points, strict=True), label=label)
    cumulative.set(title="cumulative reward", xlabel="round", ylabel="ETH", xticks=[0, *rounds])
    scatter.set(
        title="trainer reward vs median Shapley score",
        xlabel="median score",
        ylabel="trainer reward (ETH)",
    )
    cumulative.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def timings_table(timings: dict, title: str) -> Table:
    """Seconds per round spent training, on the content store, on chain, and scoring (Shapley)."""
    table = Table(title=title)
    for column in ("round", "training (s)", "storage (s)", "chain (s)", "shapley (s)"):
        table.add_column(column, justify="right")
    for round_, t in sorted(timings.items()):
        table.add_row(
            str(round_), *(f"{v:.2f}" for v in (t.training, t.storage, t.chain, t.shapley))
        )
    return table
