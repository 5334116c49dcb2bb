#!/usr/bin/env python3
"""One EdgeTune round on the embedded chain with SCRIPTED edges (no training, no IPFS): each
edge commits a made-up update hash and votes fixed Shapley scores. It shows the on-chain
protocol end to end — commit, reveal, vote, finalize, rewards — before real agents exist."""

import secrets

from eth_utils import keccak
from rich.console import Console
from rich.table import Table

from edgetune.chain.connect import connect
from edgetune.chain.deploy import deploy
from edgetune.chain.types import Ballot, TaskConfig, update_commitment, vote_commitment

ETHER = 10**18
SCRIPTED_SCORES = (0.30, 0.10, 0.05)  # Shapley values every scripted validator reports
console = Console()


def main() -> None:
    console.rule("[bold]edgetune — one round with SCRIPTED edges (no training)")
    chain = connect("embedded")
    owner, *edge_accounts = chain.accounts[:4]
    client, record = deploy(chain, owner)
    console.print(f"EdgeTune deployed at {record.address} on the embedded chain")
    config = TaskConfig(
        keccak(text="base"), keccak(text="spec"), keccak(text="global-0"),
        "scripted-base", "bafy-scripted-base", "bafy-scripted-global-0", rounds=1, max_edges=3,
    )  # fmt: skip
    task_id, _ = client.create_task(config, 3 * ETHER)
    edges = [client.as_sender(account) for account in edge_accounts]
    for edge in edges:  # the third registration fills the task and opens round 1
        edge.register(task_id, config.min_stake)
    run_round(chain.chain_id, client.address, task_id, edges)
    client.finalize(task_id)
    console.print(reward_table(client, task_id, edges))


def run_round(chain_id: int, contract: str, task_id: int, edges: list) -> None:
    salts = {edge.sender_address: secrets.token_bytes(32) for edge in edges}
    updates = {
        e.sender_address: (keccak(text=e.sender_address), f"bafy-{i}") for i, e in enumerate(edges)
    }
    for edge in edges:
        update_hash, cid = updates[edge.sender_address]
        salt = salts[edge.sender_address]
        commitment = update_commitment(chain_id, contract, task_id, 1, edge.sender_address,
                                       update_hash, cid, 100, salt)  # fmt: skip
        edge.commit_update(task_id, 1, commitment)
        console.print(f"scripted edge {edge.sender_address[:10]} committed its update")
    for edge in edges:
        update_hash, cid = updates[edge.sender_address]
        edge.reveal_update(task_id, 1, update_hash, cid, 100, salts[edge.sender_address])
    scores = tuple(round(score * 1_000_000) for score in SCRIPTED_SCORES)
    ballot = Ballot(0b111, 0b111, keccak(text="aggregate-1"), "bafy-aggregate-1", True, scores)
    for edge in edges:
        salt = salts[edge.sender_address]
        vote = vote_commitment(chain_id, contract, task_id, 1, edge.sender_address, ballot, salt)
        edge.commit_vote(task_id, 1, vote)
    for edge in edges:
        edge.reveal_vote(task_id, 1, ballot, salts[edge.sender_address])
    console.print("all scripted edges revealed their updates and votes")


def reward_table(client, task_id: int, edges: list) -> Table:
    table = Table(title=f"task {task_id}: on-chain rewards after round 1")
    for column in ("edge", "scripted score", "stake (ETH)", "owed (ETH)"):
        table.add_column(column, justify="left" if column == "edge" else "right")
    for edge, score in zip(edges, SCRIPTED_SCORES, strict=True):
        owed = client.owed(edge.sender_address)
        stake = client.stake_of(task_id, edge.sender_address)
        table.add_row(
            edge.sender_address, f"{score:.2f}", f"{stake / ETHER:.4f}", f"{owed / ETHER:.6f}"
        )
    return table


if __name__ == "__main__":
    main()
