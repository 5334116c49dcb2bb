"""edgetune on an OP-stack L2 (anvil in optimism mode): the contract deploys and a round's first
transactions go through the transport, and the L1 data fee edgetune computes from each signed
transaction equals what the node took for it (the L1FeeVault's gain, and the sender's loss beyond
its L2 execution fee)."""

from pathlib import Path

import pytest
from eth_utils import keccak
from typer.testing import CliRunner
from web3.types import TxReceipt

from edgetune.chain.connect import Chain, connect
from edgetune.chain.deploy import deploy
from edgetune.chain.l1fee import (
    DEV_L1_FEES,
    L1_FEE_VAULT,
    flz_compress_len,
    read_l1_params,
    transaction_fees,
)
from edgetune.chain.nodes import OP_CHAIN_ID, AnvilNode
from edgetune.chain.types import Phase, TaskConfig, commitment, update_payload
from edgetune.cli import app

from ..cli.conftest import one_line_error
from ..ports import free_port

pytestmark = pytest.mark.anvil
ETHER = 10**18
CONFIG = TaskConfig(
    base_model_hash=keccak(text="base"),
    adapter_spec_hash=keccak(text="spec"),
    initial_global_hash=keccak(text="global-0"),
    base_model_uri="tiny-llama",
    base_model_cid="bafybase",
    initial_global_cid="bafyglobal0",
    rounds=1,
    max_edges=2,
    registration_blocks=100,
    commit_blocks=10,
    reveal_blocks=10,
    score_commit_blocks=10,
    score_reveal_blocks=10,
    tally_blocks=10,
    attest_commit_blocks=10,
    attest_reveal_blocks=10,
    min_stake=ETHER,
    slash_absent=ETHER // 4,
    slash_non_reveal=ETHER // 2,
    slash_invalid=ETHER,
)


def test_fastlz_length_of_known_inputs() -> None:
    # Runs shorter than the 13-byte tail are literals (length + 1 control byte); long repeats
    # are one literal then matches of at most 262 bytes, 3 bytes each.
    assert flz_compress_len(b"") == 0
    assert flz_compress_len(bytes.fromhex("facade")) == 4
    assert flz_compress_len(bytes(1000)) == 21
    assert flz_compress_len(bytes(range(256))) == 256 + 8  # nothing repeats: 8 runs of 32


@pytest.mark.parametrize(
    "given", [["--chain", "embedded"], ["--rpc-url", "http://127.0.0.1:1"]], ids=str
)
def test_federation_refuses_optimism_for_a_node_it_does_not_start(given: list[str]) -> None:
    result = CliRunner().invoke(app, ["federation", "--optimism", *given])
    one_line_error(result, "--optimism", given[1])


def test_a_round_on_an_op_stack_l2_pays_the_l1_fee_edgetune_computes(
    project: Path, tmp_path: Path
) -> None:
    node = AnvilNode(
        port=free_port(), state_file=tmp_path / "state.json", optimism=True, project_root=project
    )
    with node:
        chain = connect("anvil", url=node.url)
        assert chain.chain_id == OP_CHAIN_ID
        assert read_l1_params(chain.w3) == DEV_L1_FEES  # the node wrote the L1 prices
        owner_account, edge_account = chain.accounts[0], chain.accounts[1]
        owner, deployment = deploy(chain, owner_account)
        deployed = chain.w3.eth.get_transaction_receipt(deployment.tx_hash)
        edge = owner.as_sender(edge_account)
        task_id, created = owner.create_task(CONFIG, 2 * ETHER)
        sent = [(deployed, owner_account.address, 0), (created, owner_account.address, 2 * ETHER)]
        sent.append((edge.register(task_id, ETHER), edge_account.address, ETHER))
        sent.append((owner.start(task_id), owner_account.address, 0))
        salt = keccak(text="salt")
        update = (keccak(text="update"), "bafyupdate")
        seal = commitment(
            chain.chain_id,
            owner.address,
            task_id,
            1,
            Phase.UPDATE_COMMIT,
            edge_account.address,
            update_payload(*update),
            salt,
        )
        sent.append((edge.commit(task_id, 1, Phase.UPDATE_COMMIT, seal), edge_account.address, 0))
        sent.append((edge.reveal_update(task_id, 1, *update, salt), edge_account.address, 0))
        assert owner.status(task_id).phase == Phase.SCORE_COMMIT  # the only edge revealed
        for receipt, sender, value in sent:
            _assert_fees_match_the_node(chain, receipt, sender, value)


def _assert_fees_match_the_node(chain: Chain, receipt: TxReceipt, sender: str, value: int) -> None:
    block = receipt["blockNumber"]
    assert len(chain.w3.eth.get_block(block)["transactions"]) == 1  # anvil mines one per tx
    fees = transaction_fees(chain.w3, receipt["transactionHash"])
    vault_gain = _balance_change(chain, L1_FEE_VAULT, block)
    assert fees.l1.fee > 0
    assert fees.l1.fee == vault_gain
    assert fees.reported_l1_fee in (None, vault_gain)  # anvil reports none; real nodes do
    assert -_balance_change(chain, sender, block) == fees.l2_fee + fees.l1.fee + value
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["type"] == 2 and tx["maxFeePerGas"] >= receipt["effectiveGasPrice"]  # EIP-1559
    assert fees.l1.tx_bytes > fees.l1.fastlz_bytes  # ABI zero padding compresses


def _balance_change(chain: Chain, address: str, block: int) -> int:
    return chain.w3.eth.get_balance(address, block) - chain.w3.eth.get_balance(address, block - 1)
