"""The task owner's side: publish the base model and the round-0 adapter to the content store,
then create and fund the task that pins both by hash. Edges use `fetch_base_model` to get exactly
the owner's bytes (checked against the on-chain hash) when they do not have the model locally."""

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path

from edgetune.chain.client import EdgeTuneClient
from edgetune.chain.types import TaskConfig
from edgetune.errors import EdgetuneError
from edgetune.learning import (
    AdaptedModel,
    AdapterSpec,
    BaseModel,
    adapter_to_bytes,
    attach_adapter,
    base_model_hash,
    initial_global_adapter,
    load_base_model,
)
from edgetune.learning.linear import attach_linear, linear_files, linear_hash, load_linear
from edgetune.learning.model import base_model_files
from edgetune.learning.vision.model import attach_vlm_adapter, load_vlm, vlm_files, vlm_hash
from edgetune.storage import ContentStore, fetch_verified


class BaseModelArchiveError(EdgetuneError):
    """A fetched base-model archive is not a flat folder of model files."""


@dataclass(frozen=True)
class ModelKind:
    """How to hash, package, load and adapt one kind of base model."""

    files: Callable[[Path], list[Path]]
    digest: Callable[[Path], bytes]
    load: Callable[..., BaseModel]
    attach: Callable[[BaseModel, AdapterSpec], AdaptedModel]


TEXT = ModelKind(base_model_files, base_model_hash, load_base_model, attach_adapter)
VISION = ModelKind(vlm_files, vlm_hash, load_vlm, attach_vlm_adapter)
# The cheap learner that simulates many edges in one process (learning/linear.py).
LINEAR = ModelKind(linear_files, linear_hash, load_linear, attach_linear)
MODEL_KINDS = {"text": TEXT, "vision": VISION, "linear": LINEAR}  # by `ModelSpec.kind`


@dataclass(frozen=True)
class PublishedTask:
    task_id: int
    config: TaskConfig
    model_dir: Path
    spec: AdapterSpec


def pack_base_model(model_dir: Path, kind: ModelKind = TEXT) -> bytes:
    """A reproducible tar of the hashed model files (sorted, zeroed owners and times), so the
    same folder always gives the same bytes and hence the same CID."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for file in kind.files(model_dir):
            info = tarfile.TarInfo(file.name)
            info.size, info.mode, info.mtime = file.stat().st_size, 0o644, 0
            with open(file, "rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def fetch_base_model(store: ContentStore, cid: str, expected_hash: bytes, dest: Path) -> Path:
    """Unpack the base model published at `cid` into `dest` (once), refusing other bytes."""
    if (dest / "config.json").is_file() and base_model_hash(dest) == expected_hash:
        return dest
    with tarfile.open(fileobj=io.BytesIO(store.get(cid))) as archive:
        members = archive.getmembers()
        if any(not m.isfile() or "/" in m.name or m.name.startswith(".") for m in members):
            raise BaseModelArchiveError(f"base model archive {cid} holds more than model files")
        dest.mkdir(parents=True, exist_ok=True)
        for member in members:
            (dest / member.name).write_bytes(archive.extractfile(member).read())
    load_base_model(dest, expected_hash)  # raises BaseModelMismatch if the bytes differ
    return dest


def publish_task(
    owner: EdgeTuneClient,
    store: ContentStore,
    model_dir: Path,
    spec: AdapterSpec,
    template: TaskConfig,
    pool_wei: int,
    kind: ModelKind = TEXT,
) -> PublishedTask:
    """Publish base model and initial adapter, then create the task; `template` supplies every
    parameter except the hashes and CIDs, which are computed here."""
    model_hash = kind.digest(model_dir)
    adapted = kind.attach(kind.load(model_dir, model_hash), spec)
    initial = adapter_to_bytes(initial_global_adapter(adapted))
    initial_cid = store.put(initial)
    fetch_verified(store, initial_cid, sha256(initial).digest())  # the store kept the bytes
    config = replace(
        template,
        base_model_hash=model_hash,
        adapter_spec_hash=spec.spec_hash(),
        initial_global_hash=sha256(initial).digest(),
        base_model_uri=template.base_model_uri or model_dir.name,
        base_model_cid=store.put(pack_base_model(model_dir, kind)),
        initial_global_cid=initial_cid,
    )
    task_id, _ = owner.create_task(config, pool_wei)
    return PublishedTask(task_id, config, model_dir, spec)
