"""Deploying EdgeTune and remembering where it lives.

`deployments/<chainId>.json` records the address, the deployment block and a hash of the ABI, so a
later command finds the contract and refuses one whose ABI no longer matches the sources.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.compiler import ContractArtifact, load_artifact
from edgetune.chain.connect import Chain, send
from edgetune.chain.errors import ChainError
from edgetune.chain.project import find_project_root

CONTRACT_NAME = "EdgeTune"
RUN_RECORD = Path(".edgetune/federation/last-run.json")


class DeploymentNotFound(ChainError):
    """No usable EdgeTune deployment is recorded for this chain."""


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    address: str
    block: int
    tx_hash: str
    abi_hash: str


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


def deployments_dir(root: Path | None = None) -> Path:
    return (root or find_project_root()) / "deployments"


def save_deployment(deployment: Deployment, root: Path | None = None) -> Path:
    path = deployments_dir(root) / f"{deployment.chain_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(deployment), indent=2) + "\n")
    return path


def load_client(chain: Chain, sender: LocalAccount, root: Path | None = None) -> EdgeTuneClient:
    """A client for the contract recorded for this chain, after checking it is really there."""
    chain_id = chain.chain_id
    path = deployments_dir(root) / f"{chain_id}.json"
    if not path.is_file():
        raise DeploymentNotFound(
            f"no deployment for chain {chain_id} ({path}); run edgetune deploy"
        )
    deployment = Deployment(**json.loads(path.read_text()))
    artifact = load_artifact(CONTRACT_NAME, root)
    if deployment.abi_hash != abi_hash(artifact.abi):
        raise DeploymentNotFound(f"{path} was deployed from other sources; redeploy")
    if not chain.w3.eth.get_code(deployment.address):
        raise DeploymentNotFound(f"no contract at {deployment.address} on chain {chain_id}")
    return EdgeTuneClient(chain, deployment.address, artifact.abi, sender)


@dataclass(frozen=True)
class RunRecord:
    """Where a finished federation lives, so `edgetune rewards` can find it later."""

    rpc_url: str
    contract: str
    task_id: int
    from_block: int

    def save(self, path: Path = RUN_RECORD) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path = RUN_RECORD) -> "RunRecord":
        if not path.is_file():
            raise DeploymentNotFound(
                f"no federation run recorded at {path}; pass --task and --contract"
            )
        return cls(**json.loads(path.read_text()))
