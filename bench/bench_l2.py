"""What a federation costs on an OP-stack L2: L2 execution gas and fee next to the L1 data fee,
per round and transaction kind, in total and per edge.

A small real federation (the in-process runner of `edgetune federation --chain embedded`: tiny
model, non-IID triage data, real LoRA training and Shapley scoring) runs on anvil in optimism
mode (Fjord, chain id 901) with the L1 prices of `edgetune.chain.l1fee.DEV_L1_FEES` written
into the L1Block predeploy. Then every transaction of the fresh chain is read back: its receipt
(gasUsed x effectiveGasPrice is the L2 fee) and its signed bytes, from which the L1 data fee is
computed as the OP stack charges it (tests/chain/test_l2.py checks that figure against what the
node takes). "L1 bytes" is Fjord's estimate of the transaction's compressed size on L1;
"even gwei" is the L2 gas price at which L2 execution would cost as much as the L1 data (L1 fee
/ L2 gas): the L2 fee column is at anvil's own price (about 1 gwei), not any real chain's.

Run: .venv/bin/python bench/bench_l2.py [--edges 3] [--rounds 2] [--steps 5] [--json]
(about 1 min on 2 cores)
"""

import argparse
import json
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_gas import KEEPER, OWN, _free_port
from rich import box
from rich.console import Console
from rich.table import Table

from edgetune.agent.federation import FederationConfig, FederationResult, run_in_process
from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.connect import connect
from edgetune.chain.history import TaskHistory, load_history
from edgetune.chain.l1fee import L1FeeParams, TxFees, read_l1_params, transaction_fees
from edgetune.chain.nodes import AnvilNode
from edgetune.chain.types import Phase
from edgetune.cli.common import quiet_libraries
from edgetune.learning import TrainConfig

ETHER = 10**18
SETUP = "setup"  # deployment, task creation, registrations, start: before round 1
COMMIT_LABELS = {
    Phase.UPDATE_COMMIT: "commit (update)",
    Phase.SCORE_COMMIT: "commit (scores)",
    Phase.ATTEST_COMMIT: "commit (attest)",
}
KIND_ORDER = ("deploy", "createTask", "register", "start", *OWN, *KEEPER)


@dataclass(frozen=True)
class TxRecord:
    """One transaction of the run: who sent it, what it was, in which round, what it cost."""

    tx_hash: str
    block: int
    sender: str  # "owner" or "edge i" (registration index, as `edgetune rewards` names it)
    kind: str
    round: str  # "1", "2", ... or SETUP
    fees: TxFees


@dataclass
class Totals:
    txs: int = 0
    gas: int = 0
    l2_fee: int = 0
    l1_fee: int = 0
    l1_bytes: int = 0
    tx_bytes: int = 0

    def add(self, fees: TxFees) -> None:
        self.txs += 1
        self.gas += fees.gas_used
        self.l2_fee += fees.l2_fee
        self.l1_fee += fees.l1_fee
        self.l1_bytes += fees.l1.estimated_bytes
        self.tx_bytes += fees.l1.tx_bytes

    def merge(self, other: "Totals") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class L2Run:
    chain_id: int
    l1_params: L1FeeParams
    history: TaskHistory
    roles: dict[str, str]  # edge name -> demo role
    records: list[TxRecord]


def run(edges: int, rounds: int, steps: int, workdir: Path) -> L2Run:
    """The federation on a fresh OP-mode anvil (stopped afterwards), and its transactions."""
    config = FederationConfig(
        edges=edges,
        rounds=rounds,
        train=TrainConfig(steps=steps),
        validation_per_class=2,  # Shapley evaluation is the cost; 10 examples per edge do
        test_per_class=2,
        workdir=workdir / "federation",
    )
    state = workdir / "state.json"
    with AnvilNode(port=_free_port(), state_file=state, optimism=True) as node:
        chain = connect("anvil", url=node.url)
        result = run_in_process(config, log=lambda _line: None, chain=chain)
        history = load_history(result.owner, result.task.task_id, result.deployment_block)
        names = {edge.address: f"edge {edge.index}" for edge in history.edges}
        names[result.owner.sender_address] = "owner"
        records = collect(result.owner, names, chain.block_number())
        roles = _roles(result, history)
        return L2Run(chain.chain_id, read_l1_params(chain.w3), history, roles, records)


def collect(client: EdgeTuneClient, names: dict[str, str], last_block: int) -> list[TxRecord]:
    """Every transaction in blocks 1..`last_block`, labelled from its decoded call; a call
    without a round argument (finalize) belongs to the round of the calls before it."""
    records, current = [], SETUP
    for number in range(1, last_block + 1):
        for tx in client.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            kind, round_ = _decode(client, tx)
            current = round_ or current
            fees = transaction_fees(client.w3, tx["hash"])
            sender = names.get(tx["from"], tx["from"])
            records.append(TxRecord(tx["hash"].to_0x_hex(), number, sender, kind, current, fees))
    return records


def _decode(client: EdgeTuneClient, tx) -> tuple[str, str | None]:
    if tx["to"] is None:
        return "deploy", None
    if tx["to"] != client.address:
        return "other", None
    function, args = client.contract.decode_function_input(tx["input"])
    kind = function.fn_name
    if kind == "commit":
        kind = COMMIT_LABELS[Phase(args["stage"])]
    return kind, str(args["round"]) if "round" in args else None


def _roles(result: FederationResult, history: TaskHistory) -> dict[str, str]:
    accounts = result.chain.accounts
    by_address = {accounts[edge.dev_account].address: edge.behaviour for edge in result.plan.edges}
    return {f"edge {edge.index}": by_address.get(edge.address, "?") for edge in history.edges}


def by_round(records: list[TxRecord]) -> dict[str, dict[str, Totals]]:
    """round -> kind -> totals, in play order."""
    table: dict[str, dict[str, Totals]] = defaultdict(lambda: defaultdict(Totals))
    for record in records:
        table[record.round][record.kind].add(record.fees)
    return table


def by_sender(records: list[TxRecord]) -> dict[str, Totals]:
    table: dict[str, Totals] = defaultdict(Totals)
    for record in records:
        table[record.sender].add(record.fees)
    return table


def _ether(wei: int) -> str:
    return f"{wei / ETHER:.9f}"


def _cells(totals: Totals) -> list[str]:
    # The L2 gas price at which execution would cost what the L1 data does: anvil's own L2
    # price (about 1 gwei) is no OP-stack chain's, so this is the figure that carries over.
    even = totals.l1_fee / totals.gas / 1e9 if totals.gas else 0.0
    return [
        f"{totals.txs}",
        f"{totals.gas:,}",
        _ether(totals.l2_fee),
        f"{totals.l1_fee:,}",
        _ether(totals.l1_fee),
        f"{totals.l1_bytes:,}",
        f"{even:.6f}",
    ]


def _columns(table: Table, *first: str) -> None:
    for name in first:
        table.add_column(name)
    figures = ("txs", "L2 gas", "L2 fee ETH", "L1 fee wei", "L1 fee ETH", "L1 bytes", "even gwei")
    for name in figures:
        table.add_column(name, justify="right")


def rounds_table(records: list[TxRecord]) -> Table:
    table = Table(title="cost per round and transaction kind", box=box.SIMPLE_HEAD)
    _columns(table, "round", "kind")
    grand = Totals()
    for round_, kinds in by_round(records).items():
        subtotal = Totals()
        for kind in sorted(kinds, key=lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else 99):
            table.add_row(round_, kind, *_cells(kinds[kind]))
            subtotal.merge(kinds[kind])
        table.add_row(round_, "[b]all[/b]", *_cells(subtotal), end_section=True)
        grand.merge(subtotal)
    table.add_row("[b]total[/b]", "", *_cells(grand))
    return table


def edges_table(run_: L2Run) -> Table:
    table = Table(title="cost per sender, next to what each edge earned", box=box.SIMPLE_HEAD)
    _columns(table, "sender", "role")
    table.add_column("earned ETH", justify="right")
    earned = {f"edge {edge.index}": edge.earned for edge in run_.history.edges}
    for sender, totals in sorted(by_sender(run_.records).items()):
        reward = _ether(earned[sender]) if sender in earned else "-"
        table.add_row(sender, run_.roles.get(sender, ""), *_cells(totals), reward)
    return table


def as_json(run_: L2Run) -> dict:
    totals = asdict
    return {
        "chain_id": run_.chain_id,
        "l1_params": asdict(run_.l1_params),
        "rounds": {
            r: {kind: totals(t) for kind, t in kinds.items()}
            for r, kinds in by_round(run_.records).items()
        },
        "senders": {sender: totals(t) for sender, t in by_sender(run_.records).items()},
        "earned": {f"edge {edge.index}": edge.earned for edge in run_.history.edges},
        "transactions": [
            {
                "hash": r.tx_hash,
                "block": r.block,
                "sender": r.sender,
                "kind": r.kind,
                "round": r.round,
                "gas_used": r.fees.gas_used,
                "l2_fee": r.fees.l2_fee,
                "l1_fee": r.fees.l1_fee,
                **asdict(r.fees.l1),
            }
            for r in run_.records
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="local training steps per round")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON (wei)")
    args = parser.parse_args()
    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.edges, args.rounds, args.steps, Path(tmp))
    if args.json:
        print(json.dumps(as_json(result), indent=2))
        return
    console = Console(width=200)
    params = result.l1_params
    console.print(
        f"chain id {result.chain_id}; L1 base fee {params.l1_base_fee:,} wei, blob base fee "
        f"{params.blob_base_fee:,} wei, scalars {params.base_fee_scalar} / "
        f"{params.blob_base_fee_scalar}"
    )
    console.print(rounds_table(result.records))
    console.print(edges_table(result))


if __name__ == "__main__":
    main()
