"""Deploying EdgeTune and finding it again.

`deployments/<chainId>.json` records the address, the deployment block and a hash of the ABI, so a
later command finds the contract and refuses one whose ABI no longer matches the sources. A
federation also leaves a `RunRecord` (its node's URL, contract and task), so `edgetune rewards`
and `withdraw` follow the last run without repeating its port. Every way of naming a contract
ends in `open_contract`, which refuses a malformed address, an address without code or a
contract that does not answer EdgeTune's ABI before anything is sent.
"""

import hashlib
import json
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import is_address
from web3.exceptions import Web3Exception

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.compiler import ContractArtifact, load_artifact
from edgetune.chain.connect import Chain, send
from edgetune.chain.errors import (
    DeploymentNotFound,
    InvalidAddress,
    NoContractCode,
    NotEdgeTune,
    TransactionReverted,
)
from edgetune.chain.records import Deployment, RunRecord, deployments_dir, read_deployment
from edgetune.chain.records import save_deployment as save_deployment  # callers import it here

CONTRACT_NAME = "EdgeTune"


def abi_hash(abi: list[dict]) -> str:
    return hashlib.sha256(json.dumps(abi, sort_keys=True).encode()).hexdigest()


def deploy(
    chain: Chain, sender: LocalAccount, artifact: ContractArtifact | None = None
) -> tuple[EdgeTuneClient, Deployment]:
    """Deploys a fresh EdgeTune; returns a client bound to it as `sender`, and its record."""
    artifact = artifact or load_artifact(CONTRACT_NAME)
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send(chain, factory.constructor(), sender)
    client = EdgeTuneClient(chain, receipt["contractAddress"], artifact.abi, sender)
    record = Deployment(
        chain.chain_id,
        receipt["contractAddress"],
        receipt["blockNumber"],
        receipt["transactionHash"].to_0x_hex(),
        abi_hash(artifact.abi),
    )
    return client, record


def open_contract(
    chain: Chain, address: str, sender: LocalAccount, root: Path | None = None
) -> EdgeTuneClient:
    """A client for the EdgeTune at `address`, once it is known to be one (no transaction)."""
    if not (address.startswith("0x") and is_address(address)):
        raise InvalidAddress(f"--contract {address!r} is not an address (0x and 40 hex digits)")
    where = f"chain {chain.chain_id} ({chain.url})"
    if not _has_code(chain, address):
        raise NoContractCode(f"no contract at {address} on {where}")
    client = EdgeTuneClient(chain, address, load_artifact(CONTRACT_NAME, root).abi, sender)
    try:
        client.task_count()
    except (TransactionReverted, Web3Exception) as exc:
        raise NotEdgeTune(f"the contract at {address} on {where} is not EdgeTune ({exc})") from None
    return client


def load_client(chain: Chain, sender: LocalAccount, root: Path | None = None) -> EdgeTuneClient:
    """A client for the contract recorded in deployments/ for this chain, after checking it."""
    deployment = read_deployment(chain.chain_id, root)
    path = deployments_dir(root) / f"{chain.chain_id}.json"
    if deployment is None:
        raise DeploymentNotFound(
            f"no deployment for chain {chain.chain_id} ({path}); run edgetune deploy"
        )
    if deployment.abi_hash != abi_hash(load_artifact(CONTRACT_NAME, root).abi):
        raise DeploymentNotFound(f"{path} was deployed from other sources; redeploy")
    return open_contract(chain, deployment.address, sender, root)


def find_client(
    chain: Chain, sender: LocalAccount, contract: str | None = None, root: Path | None = None
) -> EdgeTuneClient:
    """The contract a command means: `contract` if given; else the newest of the last run's
    (when it ran on this chain's URL) and the one in deployments/, among those still there.

    Both candidates have code on this chain, so their deployment blocks compare: a `deploy`
    after a federation wins, and a federation on another port (same chain id, so the same
    deployments/ file) is still found by its URL."""
    if contract is not None:
        return open_contract(chain, contract, sender, root)
    run = RunRecord.find(root)
    if run is not None and run.rpc_url == chain.url and _has_code(chain, run.contract):
        deployment = read_deployment(chain.chain_id, root)
        if not (
            deployment is not None
            and deployment.block > run.from_block
            and _has_code(chain, deployment.address)
        ):
            return open_contract(chain, run.contract, sender, root)
    return load_client(chain, sender, root)


def _has_code(chain: Chain, address: str) -> bool:
    if not is_address(address):
        return False
    checksummed = chain.w3.to_checksum_address(address)
    return bool(chain.read(lambda: chain.w3.eth.get_code(checksummed)))
