"""Gas of every EdgeTune (v2) function, and of one edge's round, as tasks grow to 256 edges.

Measured as `gasUsed` of real transactions on a fresh anvil node (Cancun, 30M block gas limit;
`--chain embedded` runs py-evm instead, same gas, slower), so each figure is what the sender
pays for, refunds included.

At each N: one 2-round task with N edges of distinct stakes; round 1 is played in full. Every
edge commits and reveals an update, a score ballot with distinct random scores for every
update (all valid, none a copy, all included), and an approval of one aggregate; one keeper
tallies (one call per 32 updates) and finalizes (one call per 64 edges). Every update is then
paid by its median and every validator by its agreement: the worst case for `tally` and
`finalize` short of slashing. An edge's gas per round is its own six transactions (three
commits, three reveals) plus its 1/N share of the tally and finalize calls a keeper pays; the
target is 1.5 x v1's six-transaction round (6 x 45,818 gas). The lifecycle rows
(releaseStake, withdraw, refundPool, requestExit, cancel) come from a small extra task at N=4.

Run: .venv/bin/python bench/bench_gas.py [--sizes 4 16 64 128 256] [--seed 0] [--chain anvil]
[--json]  (about 4 min on anvil for the default sizes)
"""

import argparse
import json
import random
import socket
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, connect, transfer
from edgetune.chain.deploy import deploy
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.types import (
    Attestation,
    Phase,
    ScoreBallot,
    TaskConfig,
    commitment,
    tally_parts,
    update_payload,
)

ETHER = 10**18
BLOCK_GAS_LIMIT = 30_000_000
V1_ROUND_TX_GAS = 45_818  # v1's mean gas per own round transaction (4 per round then)
TARGET_PER_EDGE = int(1.5 * 6 * V1_ROUND_TX_GAS)  # 412,362
LARGEST_TX_TARGET = 15_000_000  # at 256 edges, no transaction above this (half a block)
SIZES = (4, 16, 64, 128, 256)
OWN = ("commit (update)", "revealUpdate", "commit (scores)", "revealScores",
       "commit (attest)", "revealAttestation")  # fmt: skip
KEEPER = ("tally", "finalize")
CONFIG = TaskConfig(
    base_model_hash=keccak(text="base"),
    adapter_spec_hash=keccak(text="spec"),
    initial_global_hash=keccak(text="global-0"),
    base_model_uri="HuggingFaceTB/SmolLM2-135M-Instruct",
    base_model_cid="bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    initial_global_cid="bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    rounds=2,
    max_edges=256,
    # anvil mines a block per transaction: every phase must outlast 256 sequential transactions
    registration_blocks=1000,
    commit_blocks=1000,
    reveal_blocks=1000,
    score_commit_blocks=1000,
    score_reveal_blocks=1000,
    tally_blocks=1000,
    attest_commit_blocks=1000,
    attest_reveal_blocks=1000,
    min_stake=ETHER,
    slash_absent=ETHER // 4,
    slash_non_reveal=ETHER // 2,
    slash_invalid=ETHER,
)
UPDATE_CID = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va"
AGGREGATE = Attestation(keccak(text="aggregate"), UPDATE_CID, True)


@dataclass
class GasLog:
    """gasUsed per label, in call order, and per (edge, label)."""

    calls: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_edge: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, label: str, receipt, edge: str | None = None) -> None:
        self.calls[label].append(int(receipt["gasUsed"]))
        if edge is not None:
            self.by_edge[edge] += int(receipt["gasUsed"])

    def largest(self) -> tuple[str, int]:
        return max(((label, max(used)) for label, used in self.calls.items()), key=lambda x: x[1])


@dataclass(frozen=True)
class ScaleRow:
    edges: int
    log: GasLog

    @property
    def own_mean(self) -> float:
        return sum(self.log.by_edge.values()) / self.edges

    @property
    def own_max(self) -> int:
        return max(self.log.by_edge.values())

    @property
    def keeper(self) -> int:
        """Gas of every keeper call of the round: all tally parts and finalize batches."""
        return sum(sum(self.log.calls[label]) for label in KEEPER)

    @property
    def per_edge_round(self) -> float:
        return self.own_mean + self.keeper / self.edges


class Bench:
    """Plays scripted tasks on one chain, logging every receipt's gas."""

    def __init__(self, chain: Chain, owner: EdgeTuneClient, edges: list[EdgeTuneClient]) -> None:
        self.chain, self.owner, self.edges = chain, owner, edges

    def task(self, log: GasLog, edges: list[EdgeTuneClient], rounds: int, pool: int) -> int:
        task_id, receipt = self.owner.create_task(replace(CONFIG, rounds=rounds), pool)
        log.add("createTask", receipt)
        for index, edge in enumerate(edges):
            log.add("register", edge.register(task_id, ETHER + index * 10**15))
        log.add("start", self.owner.start(task_id))
        return task_id

    def commit(self, log, label, task_id, round_, stage, edge, payload, salt) -> None:
        address = edge.sender_address
        digest = commitment(
            self.chain.chain_id, edge.address, task_id, round_, stage, address, payload, salt
        )
        log.add(label, edge.commit(task_id, round_, stage, digest), address)

    def round(self, log: GasLog, task_id: int, round_: int, edges, rng: random.Random) -> None:
        """Every edge plays every stage (closing each early); a keeper tallies and finalizes."""
        salts = self.play_scores(log, task_id, round_, edges, rng)
        self.tally(log, task_id, round_, tally_parts(len(edges)))
        self.attest(log, task_id, round_, edges, salts)
        while not self.owner.receipt_events(self.finalize(log, task_id), "RoundFinalized"):
            pass  # one call per 64 edges; the last one emits RoundFinalized

    def play_scores(
        self, log: GasLog, task_id: int, round_: int, edges, rng, invalid: int = 0, copies: int = 0
    ) -> dict[str, bytes]:
        """Stages up to the tally: every edge commits and reveals an update, then a ballot of
        distinct random scores, marking every update valid except the `invalid` mask, and the
        `copies` mask as copies. Returns each edge's salt."""
        salts = {
            e.sender_address: keccak(text=f"{task_id}/{round_}/{e.sender_address}") for e in edges
        }
        updates = {a: (keccak(b"u" + s), UPDATE_CID) for a, s in salts.items()}
        valid = ((1 << len(edges)) - 1) & ~invalid
        ballots = {
            a: ScoreBallot(valid, copies, tuple(rng.randrange(1, 1_000_000) for _ in edges))
            for a in salts
        }
        stages = (
            ("commit (update)", Phase.UPDATE_COMMIT, lambda a: update_payload(*updates[a])),
            ("commit (scores)", Phase.SCORE_COMMIT, lambda a: ballots[a].payload()),
        )
        for label, stage, payload in stages:
            for edge in edges:
                a = edge.sender_address
                self.commit(log, label, task_id, round_, stage, edge, payload(a), salts[a])
            for edge in edges:
                a = edge.sender_address
                if stage == Phase.UPDATE_COMMIT:
                    receipt = edge.reveal_update(task_id, round_, *updates[a], salts[a])
                    log.add("revealUpdate", receipt, a)
                else:
                    receipt = edge.reveal_scores(task_id, round_, ballots[a], salts[a])
                    log.add("revealScores", receipt, a)
        return salts

    def tally(self, log: GasLog, task_id: int, round_: int, parts: int, first: int = 0) -> None:
        """Tally parts `first` .. `parts - 1`, with the ballots read back from the events."""
        revealed = self.owner.score_ballots(task_id, round_)
        for part in range(first, parts):
            log.add("tally", self.owner.tally(task_id, round_, revealed, part))

    def attest(self, log: GasLog, task_id: int, round_: int, edges, salts) -> None:
        """Every edge commits and reveals an approval of the one aggregate."""
        payload = AGGREGATE.payload()
        for edge in edges:
            a = edge.sender_address
            stage = Phase.ATTEST_COMMIT
            self.commit(log, "commit (attest)", task_id, round_, stage, edge, payload, salts[a])
        for edge in edges:
            a = edge.sender_address
            receipt = edge.reveal_attestation(task_id, round_, AGGREGATE, salts[a])
            log.add("revealAttestation", receipt, a)
        if self.owner.phase(task_id) != Phase.FINALIZABLE:
            raise RuntimeError(f"task {task_id} round {round_} did not close early")

    def finalize(self, log: GasLog, task_id: int):
        """One finalize call (up to 64 edges); returns its receipt."""
        receipt = self.owner.finalize(task_id)
        log.add("finalize", receipt)
        return receipt

    def scale(self, edge_count: int, rng: random.Random) -> ScaleRow:
        """One full round of a 2-round task with `edge_count` fresh edges (never credited
        before, so every credit writes a zero slot: the worst case)."""
        log = GasLog()
        edges = funded_edges(self.chain, self.owner, edge_count, f"{edge_count}-")
        task_id = self.task(log, edges, rounds=2, pool=2 * ETHER)
        self.round(log, task_id, 1, edges, rng)
        return ScaleRow(edge_count, log)

    def lifecycle(self, rng: random.Random) -> GasLog:
        """A finished 1-round task at N=4 (releaseStake, withdraw, refundPool), then a
        registration exit and a cancel."""
        log = GasLog()
        edges = self.edges[:4]
        task_id = self.task(log, edges, rounds=1, pool=ETHER + 3)  # odd wei: a dust refund
        self.round(log, task_id, 1, edges, rng)
        log.calls.pop("finalize")  # the last round's finalize also finishes the task
        for edge in edges:
            log.add("releaseStake", edge.release_stake(task_id))
            log.add("withdraw", edge.withdraw())
        log.add("refundPool", self.owner.refund_pool(task_id))
        log.add("withdraw", self.owner.withdraw())
        cancelled, _ = self.owner.create_task(CONFIG, ETHER)
        self.edges[0].register(cancelled, ETHER)
        self.edges[1].register(cancelled, ETHER)
        log.add("requestExit (registration)", self.edges[0].request_exit(cancelled))
        log.add("cancel", self.owner.cancel(cancelled))
        return log


def funded_edges(
    chain: Chain, owner: EdgeTuneClient, count: int, tag: str = ""
) -> list[EdgeTuneClient]:
    """Deterministic fresh accounts with 20 ether each (anvil has only 10 dev accounts): set by
    anvil's `anvil_setBalance`, a tenth of a transfer's time, else sent by the owner."""
    edges = []
    for index in range(count):
        account = Account.from_key(keccak(text=f"gas-edge-{tag}{index}"))
        if chain.url != "embedded":  # bench_chain runs anvil otherwise
            chain.w3.provider.make_request("anvil_setBalance", [account.address, hex(20 * ETHER)])
        else:
            transfer(chain, owner.sender, account.address, 20 * ETHER)
        edges.append(owner.as_sender(account))
    return edges


@contextmanager
def bench_chain(kind: str) -> Iterator[Chain]:
    """A fresh anvil node (stopped afterwards), or the embedded chain."""
    if kind == "embedded":
        yield connect("embedded")
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        AnvilNode(port=_free_port(), state_file=Path(tmp) / "state.json") as node,
    ):
        yield connect("anvil", url=node.url)


def measure(chain: Chain, sizes=SIZES, seed: int = 0, lifecycle: bool = True):
    """(rows per size, lifecycle log) on `chain`."""
    owner, _ = deploy(chain, chain.accounts[0])
    bench = Bench(chain, owner, funded_edges(chain, owner, 4) if lifecycle else [])
    rng = random.Random(seed)
    rows = [bench.scale(n, rng) for n in sizes]
    return rows, bench.lifecycle(rng) if lifecycle else None


def _range(used: list[int]) -> str:
    low, high = min(used), max(used)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def functions_table(rows: list[ScaleRow], lifecycle: GasLog | None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="EdgeTune v2 gas per call (min-max), by task size N")
    table.add_column("function")
    for row in rows:
        table.add_column(f"N={row.edges}", justify="right")
    labels = ["createTask", "register", "start", *OWN, *KEEPER]
    for label in labels:
        table.add_row(label, *(_range(row.log.calls[label]) for row in rows))
    if lifecycle is not None:
        for label, used in lifecycle.calls.items():
            if label not in labels:
                table.add_row(f"{label} (N=4)", _range(used), *[""] * (len(rows) - 1))
    return table


def scale_table(rows: list[ScaleRow]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Per-edge gas per round and the largest transaction, by task size N",
        caption=(
            f"own = one edge's 3 commits + 3 reveals (mean over edges); per edge = own + "
            f"(all tally + finalize calls)/N; "
            f"target = 1.5 x 6 x {V1_ROUND_TX_GAS:,} = {TARGET_PER_EDGE:,}; "
            f"block gas limit {BLOCK_GAS_LIMIT:,}, largest-tx target {LARGEST_TX_TARGET:,}"
        ),
    )
    for name in ("N", "own (mean)", "own (max)", "tally calls", "tally max", "finalize calls",
                 "finalize max", "keeper/round", "keeper/N", "per edge", "vs target",
                 "largest tx", "% block"):  # fmt: skip
        table.add_column(name, justify="right")
    for row in rows:
        label, largest = row.log.largest()
        tally, finalize = row.log.calls["tally"], row.log.calls["finalize"]
        table.add_row(
            str(row.edges),
            f"{row.own_mean:,.0f}",
            f"{row.own_max:,}",
            str(len(tally)),
            f"{max(tally):,}",
            str(len(finalize)),
            f"{max(finalize):,}",
            f"{row.keeper:,}",
            f"{row.keeper / row.edges:,.0f}",
            f"{row.per_edge_round:,.0f}",
            f"{row.per_edge_round / TARGET_PER_EDGE:.0%}",
            f"{largest:,} ({label})",
            f"{largest / BLOCK_GAS_LIMIT:.1%}",
        )
    return table


def as_json(rows: list[ScaleRow], lifecycle: GasLog | None) -> dict:
    """Gas per call by label, and the per-edge summary, per size (all gas as ints)."""
    sizes = [
        {
            "edges": row.edges,
            "calls": dict(row.log.calls),
            "own_mean": round(row.own_mean),
            "keeper_per_round": row.keeper,
            "per_edge_round": round(row.per_edge_round),
            "largest": dict(zip(("label", "gas"), row.log.largest(), strict=True)),
        }
        for row in rows
    ]
    return {"sizes": sizes, "lifecycle": dict(lifecycle.calls) if lifecycle else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain", choices=["anvil", "embedded"], default="anvil")
    parser.add_argument("--json", action="store_true", help="print the gas logs as JSON")
    args = parser.parse_args()
    with bench_chain(args.chain) as chain:
        rows, lifecycle = measure(chain, args.sizes, args.seed)
    if args.json:
        print(json.dumps(as_json(rows, lifecycle), indent=2))
        return
    console = Console(width=200)  # the tables are wider than a default 80-column pipe
    console.print(functions_table(rows, lifecycle))
    console.print(scale_table(rows))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
