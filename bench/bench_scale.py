"""Simulated scale: wall time per round against the number of edges, split into chain, storage
and evaluation; the validator's Shapley cost; and the protocol's overhead with the tiny LoRA
model.

Rounds (`--edges 4 16 64`): N real agents (`EdgeAgent`) with the cheap linear learner
(learning/linear.py, agent/simulated.py) drive the real contract on a fresh anvil through the
in-process runner (`execute_in_process`), so everything is serial in one process. The split
comes from timers around existing calls, no copied code path:
  chain       every JSON-RPC request (a timer around the web3 provider's `make_request`):
              the agents' status reads, their transactions and receipts, the runner's mining
  storage     the agents' content puts and hash-checked gets (`RoundTimings.storage`)
  evaluation  training and scoring: Shapley values and the attestation's two validation
              passes (`RoundTimings.training`, `RoundTimings.shapley`)
  other       the rest: signing, ABI encoding, commitments, state files, the loop itself
The runner's own test-set evaluation is left out. Round 1 also holds deployment and
registration, so the steady round is the mean of rounds 2..R. "per edge" divides by N: what
one edge spends when the N edges run in parallel. Validators sample at most `--permutations`
permutations here (the default sampler would make a 64-edge round take an hour of scoring in
one process); the Shapley section measures the default sampler.

Shapley (`--shapley 16 32 64`): N linear edges train round 1 and one validator scores them
with the agent's `score_round` and the v2 default `ShapleyConfig`: distinct coalitions
evaluated, permutations, seconds. "tiny LoRA" multiplies the evaluations by one validation
pass of the tiny text model (measured here, as in bench/real_round.py).

Overhead (`--overhead 64`): chain and storage per edge per round are measured on a linear
federation whose update has as many floats as a tiny-LoRA update (so the same bytes move
through the content store and the same transactions through the chain); evaluation per edge is
the tiny model's measured training round plus its validation passes (Shapley evaluations at
that N from the Shapley section, with the default sampler and with the capped one, plus the
attestation's two). Goal: chain + storage <= 5% of the round.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_scale.py [--edges 4 16 64] [--rounds 3]
         [--permutations 32] [--shapley 16 32 64] [--overhead 64] [--json]
     N = 256 needs only `--edges 256` (the contract's MAX_EDGES allows it; mind the time:
     the capped sampler still costs 32 N evaluations per validator, N^2 per round).
Timings are wall clock on a shared machine: expect noise of tens of per cent.
"""

import argparse
import itertools
import json
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from web3.middleware import Web3Middleware
from web3.types import MakeRequestFn

from edgetune.agent.federation import FederationResult, execute_in_process
from edgetune.agent.simulated import (
    SimulatedConfig,
    fund_accounts,
    linear_learner,
    linear_test_metric,
    prepare,
)
from edgetune.agent.validation import score_round
from edgetune.chain.connect import Chain, connect
from edgetune.chain.nodes import AnvilNode
from edgetune.contribution import ShapleyConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import AdapterSpec, initial_global_adapter
from edgetune.learning.linear import LinearRecipe, attach_linear, linear_hash, load_linear


@dataclass(frozen=True)
class RoundRow:
    edges: int
    round: int
    wall_s: float
    chain_s: float
    storage_s: float
    evaluation_s: float
    other_s: float
    blocks: int
    shapley_evals: float  # mean distinct coalitions per validator
    update_bytes: int


@dataclass(frozen=True)
class ShapleyRow:
    edges: int
    evaluations: int
    permutations: int
    converged: bool
    seconds: float  # linear learner, one validator
    tiny_lora_s: float  # the same evaluations at the tiny text model's validation pass


@dataclass(frozen=True)
class TinyLora:
    train_s: float  # one edge's training round (TrainConfig defaults: 40 steps)
    pass_s: float  # one validation pass (40 examples)
    update_floats: int


@dataclass(frozen=True)
class Overhead:
    edges: int
    chain_s: float  # per edge per round, measured
    storage_s: float
    other_s: float
    evaluation_default_s: float  # tiny LoRA, default sampler
    evaluation_capped_s: float  # tiny LoRA, sampler capped at --permutations
    share_default: float  # (chain + storage) / round
    share_capped: float
    share_with_other_capped: float  # (chain + storage + other) / round
    # (chain + storage) against training alone: the share if scoring cost nothing, which is
    # where the goal stops holding
    share_training_only: float


class RpcTimer:
    """Seconds spent inside JSON-RPC requests (every read and transaction), timed by a web3
    middleware on the outside of the chain's onion, so web3's own formatting counts too."""

    def __init__(self, chain: Chain) -> None:
        self.seconds = 0.0
        timer = self

        class Timing(Web3Middleware):
            def wrap_make_request(self, make_request: MakeRequestFn) -> MakeRequestFn:
                def timed(method: Any, params: Any) -> Any:
                    started = time.perf_counter()
                    try:
                        return make_request(method, params)
                    finally:
                        timer.seconds += time.perf_counter() - started

                return timed

        chain.w3.middleware_onion.inject(Timing, "bench_rpc_timer", layer=0)


@contextmanager
def anvil_chain(folder: Path) -> Iterator[Chain]:
    with socket.socket() as probe:  # a free port on 127.0.0.1
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with AnvilNode(port=port, state_file=folder / "anvil-state.json") as node:
        yield connect("anvil", url=f"http://127.0.0.1:{node.port}")


def run_rounds(config: SimulatedConfig) -> list[RoundRow]:
    """One federation of `config` on a fresh anvil, timed per round."""
    with tempfile.TemporaryDirectory() as scratch, anvil_chain(Path(scratch)) as chain:
        config = replace(config, workdir=Path(scratch) / "federation")
        test = prepare(config)
        fund_accounts(chain, config.edges + 1, config.stake_ether + 1.0)
        rpc = RpcTimer(chain)
        runner_eval = [0.0]
        metric = linear_test_metric(test)

        def timed_metric(model: Any, adapter: Any) -> tuple[float, float]:
            started = time.perf_counter()
            try:
                return metric(model, adapter)
            finally:
                runner_eval[0] += time.perf_counter() - started

        marks: list[tuple[float, float, float, int]] = [(time.perf_counter(), 0.0, 0.0, 0)]

        def on_round(_round: int) -> None:
            chain_s = rpc.seconds
            blocks = chain.block_number()  # read outside the round's chain time
            rpc.seconds = chain_s
            marks.append((time.perf_counter(), chain_s, runner_eval[0], blocks))

        result = execute_in_process(
            config.plan(), chain, timed_metric, lambda _line: None, linear_learner, on_round
        )
        return _round_rows(config.edges, result, marks)


def _round_rows(
    edges: int, result: FederationResult, marks: list[tuple[float, float, float, int]]
) -> list[RoundRow]:
    rows = []
    for round_, (before, after) in enumerate(itertools.pairwise(marks), start=1):
        wall = after[0] - before[0] - (after[2] - before[2])
        timing = result.timings[round_]
        chain_s, storage_s = after[1] - before[1], timing.storage
        evaluation_s = timing.training + timing.shapley
        cards = [a.scorecards[round_] for a in result.agents if round_ in a.scorecards]
        evals = [c.shapley.evaluations for c in cards if c.shapley is not None]
        first = next(iter(cards[0].updates.values())) if cards and cards[0].updates else {}
        rows.append(
            RoundRow(
                edges,
                round_,
                wall,
                chain_s,
                storage_s,
                evaluation_s,
                wall - chain_s - storage_s - evaluation_s,
                after[3] - before[3],
                sum(evals) / len(evals) if evals else 0.0,
                4 * sum(t.numel() for t in first.values()),
            )
        )
    return rows


def shapley_cost(edges: int, recipe: LinearRecipe, pass_s: float, seed: int = 0) -> ShapleyRow:
    """One validator's `score_round` over `edges` linear updates of round 1, default sampler."""
    with tempfile.TemporaryDirectory() as scratch:
        config = SimulatedConfig(edges=edges, recipe=recipe, workdir=Path(scratch))
        prepare(config)
        base = config.workdir / "base"
        model = attach_linear(load_linear(base, linear_hash(base)), AdapterSpec())
        learners = [linear_learner(edge, model) for edge in config.plan().edges]
        start = initial_global_adapter(model)  # type: ignore[arg-type]
        updates = [learner.train(start, 1) for learner in learners]
        began = time.perf_counter()
        card = score_round(
            start, edges, updates.__getitem__, learners[0].metric, ShapleyConfig(seed=seed)
        )
        seconds = time.perf_counter() - began
    assert card.shapley is not None
    result = card.shapley
    return ShapleyRow(
        edges,
        result.evaluations,
        result.permutations,
        result.converged,
        seconds,
        result.evaluations * pass_s,
    )


def tiny_lora() -> TinyLora:
    """The tiny text model's training round and validation pass, on one real edge."""
    from real_round import federation  # torch and the model: only when asked

    fed = federation(2)
    learner = fed.edges[0].learner
    began = time.perf_counter()
    update = learner.train(fed.initial_global, 1)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(3):
        learner.metric(fed.initial_global)
    pass_s = (time.perf_counter() - began) / 3
    return TinyLora(train_s, pass_s, sum(t.numel() for t in update.values()))


def overhead(edges: int, tiny: TinyLora, shapley: ShapleyRow, rounds: list[RoundRow]) -> Overhead:
    """Round 2 of `rounds` (a linear federation sized like tiny LoRA) per edge, against the
    tiny model's evaluation per edge."""
    steady = [r for r in rounds if r.round >= 2]
    chain_s = sum(r.chain_s for r in steady) / len(steady) / edges
    storage_s = sum(r.storage_s for r in steady) / len(steady) / edges
    other_s = sum(r.other_s for r in steady) / len(steady) / edges
    capped_evals = sum(r.shapley_evals for r in steady) / len(steady)
    passes = 3  # score_round's baseline, and the attestation's G(r-1) and G(r)
    default_s = tiny.train_s + (shapley.evaluations + passes) * tiny.pass_s
    capped_s = tiny.train_s + (capped_evals + passes) * tiny.pass_s
    protocol = chain_s + storage_s
    return Overhead(
        edges,
        chain_s,
        storage_s,
        other_s,
        default_s,
        capped_s,
        protocol / (protocol + default_s),
        protocol / (protocol + capped_s),
        (protocol + other_s) / (protocol + other_s + capped_s),
        protocol / (protocol + tiny.train_s),
    )


def sized_like(floats: int, recipe: LinearRecipe) -> LinearRecipe:
    """A recipe whose head (hidden x classes + classes) has `floats` floats, near enough."""
    return replace(recipe, hidden=max(2, round((floats - recipe.classes) / recipe.classes)))


def round_table(rows: list[RoundRow], permutations: int) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Wall time per round against N: linear learner, real agents and contract, anvil",
        caption=(
            "serial in one process; per edge = / N; evaluation = training + scoring; "
            f"validators sample <= {permutations} permutations; round 1 includes deployment "
            "and registration"
        ),
    )
    names = ("N", "round", "wall s", "chain s", "storage s", "eval s", "other s")
    for name in (*names, "per edge: chain", "storage", "eval", "blocks", "evals/validator"):
        table.add_column(name, justify="right")
    for r in rows:
        n = r.edges
        table.add_row(
            str(n), str(r.round), f"{r.wall_s:.1f}", f"{r.chain_s:.1f}", f"{r.storage_s:.2f}",
            f"{r.evaluation_s:.1f}", f"{r.other_s:.1f}", f"{r.chain_s / n:.3f}",
            f"{r.storage_s / n:.4f}", f"{r.evaluation_s / n:.3f}", str(r.blocks),
            f"{r.shapley_evals:.0f}",
        )  # fmt: skip
    return table


def shapley_table(rows: list[ShapleyRow], tiny: TinyLora | None) -> Table:
    pass_s = f"{tiny.pass_s:.2f} s" if tiny else "not measured"
    table = Table(
        box=box.SIMPLE_HEAD,
        title="One validator's Shapley cost per round, v2 default sampler (ShapleyConfig())",
        caption=f"tiny LoRA = evaluations x one tiny-model validation pass ({pass_s})",
    )
    for name in ("N", "evaluations", "permutations", "converged", "linear s", "tiny LoRA s"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r.edges), str(r.evaluations), str(r.permutations), "yes" if r.converged else "no",
            f"{r.seconds:.2f}", f"{r.tiny_lora_s:.0f}" if tiny else "-",
        )  # fmt: skip
    return table


def overhead_table(result: Overhead, tiny: TinyLora, permutations: int) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Protocol overhead per edge per round at N = {result.edges}, tiny LoRA",
        caption=(
            f"chain/storage measured with {tiny.update_floats}-float updates; tiny model: "
            f"{tiny.train_s:.2f} s training, {tiny.pass_s:.2f} s per validation pass; goal <= 5%"
        ),
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("chain s (measured)", f"{result.chain_s:.3f}"),
        ("storage s (measured)", f"{result.storage_s:.4f}"),
        ("other s (measured: signing, state files, loop)", f"{result.other_s:.3f}"),
        ("evaluation s, default sampler", f"{result.evaluation_default_s:.0f}"),
        (f"evaluation s, <= {permutations} permutations", f"{result.evaluation_capped_s:.0f}"),
        ("chain + storage share, default sampler", f"{result.share_default:.3%}"),
        (f"chain + storage share, <= {permutations} permutations", f"{result.share_capped:.3%}"),
        (f"+ other, <= {permutations} perms", f"{result.share_with_other_capped:.3%}"),
        ("goal met (<= 5%)", "yes" if result.share_with_other_capped <= 0.05 else "NO"),
        ("chain + storage against training alone", f"{result.share_training_only:.1%}"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, nargs="*", default=[4, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--permutations", type=int, default=32, help="validators' sampler cap")
    parser.add_argument("--shapley", type=int, nargs="*", default=[16, 32, 64])
    parser.add_argument("--overhead", type=int, nargs="*", default=[64], help="N, tiny LoRA")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if any(n < 1 for n in [*args.edges, *args.shapley, *args.overhead]) or args.rounds < 2:
        sys.exit("error: every N must be >= 1 and --rounds >= 2 (round 1 holds registration)")
    if args.permutations < 1:
        sys.exit("error: --permutations must be >= 1")
    capped = ShapleyConfig(max_permutations=args.permutations, min_permutations=args.permutations)
    recipe = LinearRecipe()
    simulated = SimulatedConfig(shapley=capped, recipe=recipe)
    report: dict[str, Any] = {}
    tables: list[Table] = []
    tiny = tiny_lora() if args.shapley or args.overhead else None
    if tiny:
        report["tiny_lora"] = asdict(tiny)
    rounds = [
        r for n in args.edges for r in run_rounds(replace(simulated, edges=n, rounds=args.rounds))
    ]
    if rounds:
        report["rounds"] = [asdict(r) for r in rounds]
        tables.append(round_table(rounds, args.permutations))
    pass_s = tiny.pass_s if tiny else 0.0
    shapley = [shapley_cost(n, recipe, pass_s) for n in sorted({*args.shapley, *args.overhead})]
    if args.shapley:
        report["shapley"] = [asdict(r) for r in shapley if r.edges in args.shapley]
        tables.append(shapley_table([r for r in shapley if r.edges in args.shapley], tiny))
    report["overhead"] = []
    for n in args.overhead:
        assert tiny is not None
        sized = sized_like(tiny.update_floats, recipe)
        measured = run_rounds(replace(simulated, edges=n, rounds=2, recipe=sized))
        row = next(r for r in shapley if r.edges == n)
        result = overhead(n, tiny, row, measured)
        report["overhead"].append(
            {"result": asdict(result), "rounds": [asdict(r) for r in measured]}
        )
        tables.append(overhead_table(result, tiny, args.permutations))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    console = Console(width=200)
    for table in tables:
        console.print(table)


if __name__ == "__main__":
    try:
        main()
    except EdgetuneError as error:  # a refused config (more edges than MAX_EDGES), no node
        sys.exit(f"error: {error}")
