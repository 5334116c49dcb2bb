"""LoRA adapters: attach to a base, build the shared initial global adapter, move tensors in/out,
and the canonical byte form every edge hashes.

Canonical bytes are a safetensors file written here rather than by the library, so an upgrade
of `safetensors` can never change a hash: header = compact JSON with keys sorted, each entry
`{"dtype":"F32","shape":[...],"data_offsets":[begin,end]}`, no `__metadata__`, padded with
spaces to a multiple of 8; then the float32 little-endian data in sorted key order.
Any safetensors reader loads it; `adapter_from_bytes` accepts only this exact form.
"""

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from edgetune.learning.config import AdapterSpec
from edgetune.learning.errors import InvalidConfig, MalformedAdapter
from edgetune.learning.model import BaseModel

Tensors = dict[str, torch.Tensor]
Shapes = dict[str, tuple[int, ...]]


@dataclass
class AdaptedModel:
    """A base model with the task's LoRA adapter attached; one per edge, reused every round."""

    model: PeftModel
    tokenizer: object
    spec: AdapterSpec

    def shapes(self, trained_only: bool = False) -> Shapes:
        """Adapter tensor names and shapes (what a parsed update or global must match)."""
        state = get_peft_model_state_dict(self.model)
        keys = trained_keys(self.spec, state) if trained_only else sorted(state)
        return {k: tuple(state[k].shape) for k in keys}

    def get_adapter(self, trained_only: bool = False) -> Tensors:
        """Copy of the adapter tensors (float32); `trained_only` gives what is exchanged."""
        state = get_peft_model_state_dict(self.model)
        keys = trained_keys(self.spec, state) if trained_only else sorted(state)
        return {k: state[k].detach().to("cpu", torch.float32).contiguous().clone() for k in keys}

    def set_adapter(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load adapter tensors (a full global, or only the trained keys over the current A)."""
        expected = self.shapes()
        unknown = sorted(set(tensors) - set(expected))
        if unknown:
            raise MalformedAdapter(f"adapter has keys this model lacks: {unknown[:3]}")
        result = set_peft_model_state_dict(self.model, dict(tensors))
        if getattr(result, "unexpected_keys", None):
            raise MalformedAdapter(f"peft rejected adapter keys: {result.unexpected_keys[:3]}")


def attach_adapter(base: BaseModel, spec: AdapterSpec) -> AdaptedModel:
    """Wrap the base model with LoRA per `spec`; in "ffa" mode the A matrices are frozen."""
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(spec.target_modules),
        lora_dropout=spec.dropout,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base.model, config)
    except ValueError as exc:
        raise InvalidConfig(
            f"AdapterSpec.target_modules {spec.target_modules} do not fit this model: {exc}"
        ) from exc
    if spec.mode == "ffa":
        for name, param in model.named_parameters():
            if "lora_A" in name:
                param.requires_grad_(False)
    return AdaptedModel(model=model, tokenizer=base.tokenizer, spec=spec)


def trained_keys(spec: AdapterSpec, tensors: Mapping[str, object]) -> list[str]:
    """Sorted names of the trained, exchanged tensors: B only in "ffa", all in "fedit"."""
    keys = sorted(tensors)
    return [k for k in keys if ".lora_B." in k] if spec.mode == "ffa" else keys


def initial_global_adapter(adapted: AdaptedModel) -> Tensors:
    """Round-0 global adapter: A ~ U(-1/sqrt(in), 1/sqrt(in)) from `spec.init_seed`, B = 0.

    Built once by the task owner and published as bytes; edges load A from those bytes, never
    from their own generator. The bound matches peft's default kaiming-uniform(a=sqrt(5)).
    """
    generator = torch.Generator().manual_seed(adapted.spec.init_seed)
    tensors = {}
    for key, shape in adapted.shapes().items():
        if ".lora_A." in key:
            bound = 1.0 / math.sqrt(shape[1])
            values = torch.rand(shape, generator=generator, dtype=torch.float64)
            tensors[key] = ((values * 2 - 1) * bound).to(torch.float32)
        else:
            tensors[key] = torch.zeros(shape, dtype=torch.float32)
    return tensors


def adapter_to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Canonical safetensors bytes (module docstring): same tensors, same bytes, every machine."""
    header: dict[str, dict[str, object]] = {}
    chunks = []
    offset = 0
    for key in sorted(tensors):
        array = np.ascontiguousarray(
            tensors[key].detach().cpu().to(torch.float32).numpy(), dtype="<f4"
        )
        data = array.tobytes()
        header[key] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def adapter_from_bytes(data: bytes, expected: Mapping[str, tuple[int, ...]]) -> Tensors:
    """Parse canonical adapter bytes, checking keys, shapes, dtype and finiteness.

    Raises MalformedAdapter with a one-line reason; this is the validator's format check.
    """
    header = _parse_header(data)
    if sorted(header) != sorted(expected):
        missing = sorted(set(expected) - set(header))[:3]
        extra = sorted(set(header) - set(expected))[:3]
        raise MalformedAdapter(
            f"adapter keys differ from the spec: missing {missing}, unexpected {extra}"
        )
    body = memoryview(data)[8 + struct.unpack("<Q", data[:8])[0] :]
    tensors = {}
    for key in sorted(header):
        entry = header[key]
        shape = tuple(entry["shape"])
        if shape != tuple(expected[key]):
            raise MalformedAdapter(
                f"adapter tensor {key} has shape {shape}, expected {tuple(expected[key])}"
            )
        begin, end = entry["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype="<f4").reshape(shape)
        if not np.isfinite(array).all():
            raise MalformedAdapter(f"adapter tensor {key} contains NaN or Inf")
        tensors[key] = torch.from_numpy(array.astype(np.float32))
    if adapter_to_bytes(tensors) != data:
        raise MalformedAdapter(
            "adapter bytes are not in canonical form (layout, padding or metadata)"
        )
    return tensors


def _parse_header(data: bytes) -> dict[str, dict]:
    """Read and sanity-check the safetensors header; any structural fault is MalformedAdapter."""
    if len(data) < 8:
        raise MalformedAdapter(f"adapter is {len(data)} bytes, too short for a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise MalformedAdapter(
            f"adapter header length {length} exceeds the {len(data)} bytes given"
        )
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedAdapter(f"adapter header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or "__metadata__" in header:
        raise MalformedAdapter("adapter header must be a tensor table without __metadata__")
    body_len = len(data) - 8 - length
    for key, entry in header.items():
        if not isinstance(entry, dict) or entry.get("dtype") != "F32":
            dtype = entry.get("dtype") if isinstance(entry, dict) else None
            raise MalformedAdapter(f"adapter tensor {key} has dtype {dtype}, expected F32")
        try:
            begin, end = entry["data_offsets"]
            shape = entry["shape"]
            ok = all(isinstance(d, int) and d >= 0 for d in [*shape, begin, end])
            ok = ok and begin <= end <= body_len and end - begin == 4 * math.prod(shape)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise MalformedAdapter(f"adapter tensor {key} has an inconsistent header entry")
    return header
