"""Rendering a task's history for people: rich tables, JSON, and a matplotlib figure. The data
comes from `edgetune.chain.history`; nothing here reads the chain."""

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from edgetune.chain.history import EdgeRecord, TaskHistory

ETHER = 10**18


def ether(wei: int) -> str:
    return f"{wei / ETHER:.6f}"


def short_address(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def edge_label(edge: EdgeRecord, roles: Mapping[str, str] | None = None) -> str:
    """How every table and figure names an edge: its registration index, its role when known,
    its short address ("#2 lazy 0x3C44…93BC")."""
    role = (roles or {}).get(edge.address)
    return " ".join(part for part in (f"#{edge.index}", role, short_address(edge.address)) if part)


def edges_table(history: TaskHistory, roles: Mapping[str, str] | None = None) -> Table:
    """One row per edge, by registration index; `roles` (address -> role name) when known."""
    table = Table(
        title=f"task {history.task_id}: edges ({history.phase}, round "
        f"{history.current_round} of {history.rounds_planned})",
        caption="released stake is stake handed back, not earnings; "
        "withdrawn and owed are the account's, across all its tasks",
    )
    columns = (
        "edge",
        "state",
        "stake (ETH)",
        "rounds joined",
        "median score by round",
        "mean agreement",
        "trainer (ETH)",
        "validator (ETH)",
        "earned (ETH)",
        "slashed (ETH)",
        "released stake (ETH)",
        "withdrawn (ETH)",
        "owed (ETH)",
    )
    for column in columns:
        left = column in ("edge", "state", "median score by round")
        # The edge's name stays on one line: it is how every table and figure names it.
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "edge")
    for edge in history.edges:
        scores = " ".join(f"r{r}:{s:+.3f}" for r, s in sorted(edge.scores.items())) or "-"
        agreement = sum(edge.agreement.values()) / len(edge.agreement) if edge.agreement else 0.0
        table.add_row(
            edge_label(edge, roles),
            str(edge.state),
            ether(edge.stake),
            str(len(edge.rounds_joined)),
            scores,
            f"{agreement:.2f}",
            *(ether(wei) for wei in _money(edge)),
        )
    table.add_section()
    totals = [sum(column) for column in zip(*(_money(e) for e in history.edges), strict=True)]
    table.add_row(
        "total",
        "",
        ether(sum(e.stake for e in history.edges)),
        "",
        "",
        "",
        *(ether(wei) for wei in totals or [0] * 7),
    )
    return table


def _money(edge: EdgeRecord) -> tuple[int, ...]:
    """The edges table's money columns after "mean agreement", in wei."""
    trainer, validator = sum(edge.trainer_reward.values()), sum(edge.validator_reward.values())
    return (
        trainer,
        validator,
        edge.earned,
        edge.slashed,
        edge.released_stake,
        edge.withdrawn,
        edge.owed,
    )


def rounds_table(history: TaskHistory) -> Table:
    table = Table(
        title=f"task {history.task_id}: rounds (funded {ether(history.funded)} ETH, "
        f"{ether(history.remaining)} ETH remaining)"
    )
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


def history_json(history: TaskHistory, roles: Mapping[str, str] | None = None) -> str:
    """The history as JSON (wei as integers); each edge also gets its label, role and earnings."""
    data = asdict(history)
    for edge, record in zip(data["edges"], history.edges, strict=True):
        edge["label"] = edge_label(record, roles)
        edge["role"] = (roles or {}).get(record.address)
        edge["earned"] = record.earned
    return json.dumps(data, indent=2)


def figure_path(path: Path) -> Path:
    """The file `plot_rewards` writes for `path`: `path` itself, or with `.png` (matplotlib's
    default) when it names no format."""
    return path if path.suffix else path.with_name(f"{path.name}.png")


def figure_formats() -> set[str]:
    """The file suffixes (without the dot) matplotlib writes figures as."""
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def plot_rewards(history: TaskHistory, path: Path, roles: Mapping[str, str] | None = None) -> Path:
    """Cumulative reward per edge by round, and each edge's median score against its reward;
    returns the file written (see `figure_path`)."""
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
        label = edge_label(edge, roles)
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
    if history.edges:
        cumulative.legend(fontsize=8)
    figure.tight_layout()
    path = figure_path(path)
    try:
        figure.savefig(path, dpi=120)
    finally:
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
