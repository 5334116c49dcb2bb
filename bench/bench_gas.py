"""Gas of every EdgeTune function in a typical round, and of `finalize` as tasks grow to MAX_EDGES.

Measured as `gasUsed` from the receipts of real transactions on a fresh anvil node (Cancun,
30M block gas limit), so each figure is what the sender pays for, refunds included.

- Typical round: a 4-edge, 2-round task, every edge training and voting with its own distinct
  scores; the rows show min/max over the calls (the last call of a phase closes it early, the
  first vote for a candidate stores it, the last round's finalize finishes the task), then the
  end-of-task calls and the registration-time exit and cancel.
- Scaling: one round with N edges, all trained, all voting for one candidate with distinct,
  positive scores, distinct stakes: every update is paid by a median over N-1 scores and every
  voter is credited, the worst case for `finalize` short of slashing.

Run: .venv/bin/python bench/bench_gas.py [--sizes 4 8 16 32 64] [--typical-edges 4] [--seed 0]
"""

import argparse
import random
import socket
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import Chain, connect, transfer
from edgetune.chain.deploy import deploy
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.types import Ballot, Phase, TaskConfig, update_commitment, vote_commitment

ETHER = 10**18
BLOCK_GAS_LIMIT = 30_000_000
ROUND_FUNCTIONS = ("commitUpdate", "revealUpdate", "commitVote", "revealVote")
CONFIG = TaskConfig(
    base_model_hash=keccak(text="base"),
    adapter_spec_hash=keccak(text="spec"),
    initial_global_hash=keccak(text="global-0"),
    base_model_uri="HuggingFaceTB/SmolLM2-135M-Instruct",
    base_model_cid="bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    initial_global_cid="bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    max_edges=64,
    registration_blocks=500,  # anvil mines one block per transaction: phases must outlast
    commit_blocks=500,  # 64 sequential transactions
    reveal_blocks=500,
    vote_commit_blocks=500,
    vote_reveal_blocks=500,
    min_stake=ETHER,
    slash_non_reveal=ETHER // 2,
    slash_invalid=ETHER,
)
UPDATE_CID = "bafybeie5gq4jxvzmsym6hjlwxej4rwdoxt7wadqvmmwbqi7r27fclha2va"


@dataclass
class GasLog:
    """gasUsed per function label, in call order."""

    calls: dict[str, list[int]]

    def add(self, label: str, receipt) -> None:
        self.calls[label].append(int(receipt["gasUsed"]))


@dataclass(frozen=True)
class ScaleRow:
    edges: int
    finalize: int
    reveal_vote_max: int
    own_per_edge: float  # mean over edges of its commit/reveal of update and vote

    @property
    def per_edge_round(self) -> float:
        return self.own_per_edge + self.finalize / self.edges


class Bench:
    """Drives tasks with scripted edges on one chain, logging every receipt's gas."""

    def __init__(self, chain: Chain, owner: EdgeTuneClient, edges: list[EdgeTuneClient]) -> None:
        self.chain, self.owner, self.edges = chain, owner, edges

    def task(self, log: GasLog, edges: list[EdgeTuneClient], rounds: int, pool: int) -> int:
        task_id, receipt = self.owner.create_task(replace(CONFIG, rounds=rounds), pool)
        log.add("createTask", receipt)
        for index, edge in enumerate(edges):
            log.add("register", edge.register(task_id, ETHER + index * 10**15))
        if self.owner.phase(task_id) == Phase.REGISTRATION:  # a full task starts by itself
            log.add("start", self.owner.start(task_id))
        return task_id

    def round(self, log: GasLog, task_id: int, round_: int, edges: list[EdgeTuneClient], rng):
        """All edges commit, reveal, vote (distinct scores) and reveal; then finalize."""
        salts = {
            e.sender_address: keccak(text=f"{task_id}/{round_}/{e.sender_address}") for e in edges
        }
        updates = {
            a: (keccak(b"u" + s), UPDATE_CID, 100 + i) for i, (a, s) in enumerate(salts.items())
        }
        for edge in edges:
            address = edge.sender_address
            commitment = update_commitment(
                self.chain.chain_id, edge.address, task_id, round_, address,
                *updates[address], salts[address],
            )  # fmt: skip
            log.add("commitUpdate", edge.commit_update(task_id, round_, commitment))
        for edge in edges:
            address = edge.sender_address
            receipt = edge.reveal_update(task_id, round_, *updates[address], salts[address])
            log.add("revealUpdate", receipt)
        mask = (1 << len(edges)) - 1
        ballots = {
            e.sender_address: Ballot(
                mask, mask, keccak(text=f"agg/{task_id}/{round_}"), UPDATE_CID, True,
                tuple(rng.randrange(1, 1_000_000) for _ in edges),
            )
            for e in edges
        }  # fmt: skip
        for edge in edges:
            address = edge.sender_address
            commitment = vote_commitment(
                self.chain.chain_id, edge.address, task_id, round_, address,
                ballots[address], salts[address],
            )  # fmt: skip
            log.add("commitVote", edge.commit_vote(task_id, round_, commitment))
        for index, edge in enumerate(edges):
            address = edge.sender_address
            label = "revealVote (first for candidate)" if index == 0 else "revealVote (later)"
            log.add(label, edge.reveal_vote(task_id, round_, ballots[address], salts[address]))
        if self.owner.phase(task_id) != Phase.FINALIZABLE:
            raise RuntimeError(f"task {task_id} round {round_} did not close early")
        log.add("finalize", self.owner.finalize(task_id))

    def typical(self, edge_count: int, rng: random.Random) -> GasLog:
        log = GasLog(defaultdict(list))
        edges = self.edges[:edge_count]
        task_id = self.task(log, edges, rounds=2, pool=2 * ETHER + 3)  # odd wei: a dust refund
        for round_ in (1, 2):
            self.round(log, task_id, round_, edges, rng)
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

    def scale(self, edge_count: int, rng: random.Random) -> ScaleRow:
        log = GasLog(defaultdict(list))
        edges = self.edges[:edge_count]
        task_id = self.task(log, edges, rounds=1, pool=ETHER)
        self.round(log, task_id, 1, edges, rng)
        reveals = log.calls["revealVote (first for candidate)"] + log.calls["revealVote (later)"]
        own = sum(sum(log.calls[f]) for f in ROUND_FUNCTIONS[:3]) + sum(reveals)
        (finalize,) = log.calls["finalize"]
        return ScaleRow(edge_count, finalize, max(reveals), own / edge_count)


def funded_edges(chain: Chain, owner: EdgeTuneClient, count: int) -> list[EdgeTuneClient]:
    """Deterministic fresh accounts funded by the owner (anvil has only 10 dev accounts)."""
    accounts: list[LocalAccount] = []
    for index in range(count):
        account = Account.from_key(keccak(text=f"gas-edge-{index}"))
        transfer(chain, owner.sender, account.address, 50 * ETHER)
        accounts.append(account)
    return [owner.as_sender(a) for a in accounts]


def typical_table(log: GasLog, edge_count: int) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"EdgeTune gas per call: {edge_count} edges, 2 rounds, distinct scores (anvil)",
    )
    for name in ("function", "calls", "min gas", "max gas"):
        table.add_column(name, justify="left" if name == "function" else "right")
    for label, used in log.calls.items():
        table.add_row(label, str(len(used)), f"{min(used):,}", f"{max(used):,}")
    return table


def scale_table(rows: list[ScaleRow]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="finalize and per-edge gas per round as the task grows (all train, all vote)",
        caption=(
            "own/edge = mean of one edge's commitUpdate+revealUpdate+commitVote+revealVote; "
            "per edge per round = own/edge + finalize/N; block gas limit 30,000,000"
        ),
    )
    for name in ("N", "finalize", "% block", "finalize/N", "revealVote max", "own/edge"):
        table.add_column(name, justify="right")
    table.add_column("per edge per round", justify="right")
    for row in rows:
        table.add_row(
            str(row.edges),
            f"{row.finalize:,}",
            f"{row.finalize / BLOCK_GAS_LIMIT:.1%}",
            f"{row.finalize // row.edges:,}",
            f"{row.reveal_vote_max:,}",
            f"{row.own_per_edge:,.0f}",
            f"{row.per_edge_round:,.0f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--typical-edges", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    console = Console()
    with (
        tempfile.TemporaryDirectory() as tmp,
        AnvilNode(port=_free_port(), state_file=Path(tmp) / "state.json") as node,
    ):
        chain = connect("anvil", url=node.url)
        owner, _ = deploy(chain, chain.accounts[0])
        edges = funded_edges(chain, owner, max([args.typical_edges, *args.sizes]))
        bench = Bench(chain, owner, edges)
        console.print(typical_table(bench.typical(args.typical_edges, rng), args.typical_edges))
        console.print(scale_table([bench.scale(n, rng) for n in args.sizes]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
