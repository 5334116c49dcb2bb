"""What to build and how to train: the LoRA adapter spec (hashed on chain) and training knobs."""

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

from edgetune.learning.errors import InvalidConfig

AdapterMode = Literal["ffa", "fedit"]
LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
LLAMA_ALL_LINEAR = (*LLAMA_ATTENTION, "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterSpec:
    """The LoRA configuration every edge of a task shares; `spec_hash()` goes on chain.

    mode "ffa" (default): the A matrices are fixed by the published initial global adapter and
    only B is trained and exchanged, so averaging B is exactly averaging the products B·A.
    mode "fedit": A and B are both trained and averaged separately (an approximation).

    server_momentum β: the task's aggregation rule, FedAvgM at server lr 1 (0: plain FedAvg).
    It is hashed with the rest because every validator must aggregate alike to attest the same
    bytes; its only state is the last two on-chain globals (`momentum_aggregate`).
    """

    rank: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] = LLAMA_ATTENTION
    dropout: float = 0.0
    mode: AdapterMode = "ffa"
    init_seed: int = 0
    server_momentum: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if not isinstance(self.rank, int) or self.rank < 1:
            raise InvalidConfig(f"AdapterSpec.rank must be a positive int, got {self.rank!r}")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise InvalidConfig(f"AdapterSpec.alpha must be a positive number, got {self.alpha!r}")
        if not self.target_modules or not all(
            isinstance(m, str) and m for m in self.target_modules
        ):
            raise InvalidConfig(
                f"AdapterSpec.target_modules must be non-empty names, got {self.target_modules!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidConfig(f"AdapterSpec.dropout must be in [0, 1), got {self.dropout!r}")
        if self.mode not in ("ffa", "fedit"):
            raise InvalidConfig(f"AdapterSpec.mode must be 'ffa' or 'fedit', got {self.mode!r}")
        if not isinstance(self.init_seed, int) or not 0 <= self.init_seed < 2**63:
            raise InvalidConfig(
                f"AdapterSpec.init_seed must be an int in [0, 2^63), got {self.init_seed!r}"
            )
        momentum = self.server_momentum
        number = isinstance(momentum, int | float) and not isinstance(momentum, bool)
        if not number or not 0 <= momentum < 1:
            raise InvalidConfig(
                f"AdapterSpec.server_momentum must be in [0, 1), got {self.server_momentum!r}"
            )

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, target modules sorted (their order is moot)."""
        data = asdict(self)
        data["alpha"] = float(self.alpha)
        data["dropout"] = float(self.dropout)
        data["target_modules"] = sorted(self.target_modules)
        data["dtype"] = "float32"
        # Plain FedAvg keeps the key out, so every spec from before the field hashes as it did.
        if self.server_momentum:
            data["server_momentum"] = float(self.server_momentum)
        else:
            del data["server_momentum"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "AdapterSpec":
        """Inverse of `to_json`; rejects malformed JSON and unknown fields by name."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidConfig(f"AdapterSpec is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidConfig(f"AdapterSpec JSON must be an object, not {type(data).__name__}")
        if data.pop("dtype", "float32") != "float32":
            raise InvalidConfig("AdapterSpec dtype must be float32")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidConfig(f"AdapterSpec JSON has unexpected fields: {exc}") from exc

    def spec_hash(self) -> bytes:
        """sha256 of `to_json()`: the task's `adapterSpecHash`."""
        return hashlib.sha256(self.to_json().encode()).digest()


@dataclass(frozen=True)
class TrainConfig:
    """Knobs for one edge's local training round; the seed makes CPU training repeatable."""

    steps: int = 40
    batch_size: int = 16
    lr: float = 1e-2
    seed: int = 0
    max_length: int = 128
    weight_decay: float = 0.0
    progress: bool = False
    # One thread by default: the tiny model gains nothing from more, and on a busy machine
    # oversubscribed OpenMP threads spin and slow training by 10-100x. None = torch's default.
    threads: int | None = 1
    # FedProx: adds prox_mu/2 * ||w - w_global||^2 over the trained parameters, pulling a
    # round's update back toward the global it started from (client drift under label skew).
    prox_mu: float = 0.0
    # FedRS-style restricted softmax over answer candidates: the token ids of each candidate
    # answer whose label this edge has no case of. Where a training answer and such a
    # candidate part ways, the candidate's next token is all but taken out of the softmax, so
    # the edge stops teaching the model to rule out what it never sees (`RestrictedSoftmax`).
    lacking_answers: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InvalidConfig(f"TrainConfig.steps must be >= 1, got {self.steps!r}")
        if self.batch_size < 1:
            raise InvalidConfig(f"TrainConfig.batch_size must be >= 1, got {self.batch_size!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise InvalidConfig(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if not math.isfinite(self.prox_mu) or self.prox_mu < 0:
            raise InvalidConfig(f"TrainConfig.prox_mu must be >= 0, got {self.prox_mu!r}")
        if self.max_length < 2:
            raise InvalidConfig(f"TrainConfig.max_length must be >= 2, got {self.max_length!r}")
