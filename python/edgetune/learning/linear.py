"""A cheap stand-in for the LoRA model, so many edges fit in one process: multinomial logistic
regression on synthetic data.

The split mirrors a base model and its adapter. The frozen *base* is a fixed random feature map
phi(x) = tanh(x P), described by one small JSON file (`linear.json`) that the owner publishes
and the task pins by sha256 like any base model. The *adapter* that edges train, exchange and
aggregate is the linear head over those features (`head.weight`, `head.bias`), so updates are
real trained parameters in the same canonical bytes (`adapter_to_bytes`), and the validator's
utility (minus validation cross-entropy) is smooth, as the text model's loss is.

Data come from a teacher head over the same features, with Gumbel noise on its logits so no
head can reach zero loss; each edge draws a non-IID class mix (Dirichlet, as `shard_non_iid`
does for the text demo) and keeps a balanced validation set of its own.
"""

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgetune.learning.config import AdapterSpec, TrainConfig
from edgetune.learning.errors import BaseModelMismatch, DataError, InvalidConfig
from edgetune.learning.model import deterministic_torch

LINEAR_FILE = "linear.json"
DATA_FILE = "linear-data.npz"
_DATA_KEYS = ("train_x", "train_y", "val_x", "val_y")
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LinearRecipe:
    """Everything the frozen base and the synthetic task are made of, by seed."""

    features: int = 16
    hidden: int = 32
    classes: int = 4
    seed: int = 0
    # Temperature of the Gumbel noise on the teacher's logits: higher = noisier labels.
    label_noise: float = 0.5

    def __post_init__(self) -> None:
        for name in ("features", "hidden", "classes"):
            if getattr(self, name) < 2:
                raise InvalidConfig(f"LinearRecipe.{name} must be >= 2, got {getattr(self, name)}")


@dataclass(frozen=True)
class LinearBase:
    recipe: LinearRecipe
    projection: torch.Tensor  # features x hidden, frozen


@dataclass(frozen=True)
class LabelledData:
    x: torch.Tensor  # samples x features, float32
    y: torch.Tensor  # samples, int64 class labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class LinearModel:
    """The frozen base with the task's adapter layout attached: what `AdaptedModel` is to the
    text model. `spec` is pinned by the task like a LoRA spec; only its `init_seed` is unused
    (the round-0 head is zero, `initial_global_adapter`'s choice for non-A tensors)."""

    base: LinearBase
    spec: AdapterSpec

    def shapes(self, trained_only: bool = False) -> dict[str, tuple[int, ...]]:
        """Every tensor is trained and exchanged, so `trained_only` changes nothing."""
        recipe = self.base.recipe
        return {"head.bias": (recipe.classes,), "head.weight": (recipe.hidden, recipe.classes)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.base.projection)

    def featurize(self, data: LabelledData) -> "Featurized":
        """`data` through the frozen base, once: a validator scores thousands of heads on it."""
        return Featurized(self.features(data.x), data.y)


@dataclass(frozen=True)
class Featurized:
    phi: torch.Tensor  # samples x hidden: the frozen base's output
    y: torch.Tensor

    def loss(self, adapter: Mapping[str, torch.Tensor]) -> float:
        """Mean cross-entropy of the head `adapter`."""
        with _one_thread():
            return float(torch.nn.functional.cross_entropy(_logits(adapter, self.phi), self.y))

    def accuracy(self, adapter: Mapping[str, torch.Tensor]) -> float:
        with _one_thread():
            return float((_logits(adapter, self.phi).argmax(dim=1) == self.y).float().mean())


def write_linear_base(directory: Path, recipe: LinearRecipe) -> Path:
    """The base model folder the owner publishes: one canonical JSON file."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(recipe), sort_keys=True, separators=(",", ":"))
    (directory / LINEAR_FILE).write_text(text + "\n")
    return directory


def linear_files(model_dir: Path) -> list[Path]:
    return [model_dir / LINEAR_FILE]


def linear_hash(model_dir: Path) -> bytes:
    return hashlib.sha256((model_dir / LINEAR_FILE).read_bytes()).digest()


def load_linear(model_dir: Path, expected_hash: bytes | None = None) -> LinearBase:
    """The base model at `model_dir`, refused if its hash is not the task's."""
    actual = linear_hash(model_dir)
    if expected_hash is not None and actual != expected_hash:
        raise BaseModelMismatch(str(model_dir), expected_hash, actual)
    try:
        recipe = LinearRecipe(**json.loads((model_dir / LINEAR_FILE).read_text()))
    except (ValueError, TypeError) as exc:
        raise InvalidConfig(f"{model_dir / LINEAR_FILE} is not a LinearRecipe: {exc}") from None
    return base_from_recipe(recipe)


def attach_linear(base: LinearBase, spec: AdapterSpec) -> LinearModel:
    return LinearModel(base, spec)


def train_linear(
    model: LinearModel, start: Mapping[str, torch.Tensor], data: LabelledData, config: TrainConfig
) -> Tensors:
    """`config.steps` minibatch SGD steps on cross-entropy from the head `start`, with the
    gradient in closed form (softmax minus one-hot), batches drawn by `config.seed`."""
    if len(data) == 0:
        raise DataError("train_linear needs at least one example")
    weight = start["head.weight"].detach().clone().float()
    bias = start["head.bias"].detach().clone().float()
    generator = torch.Generator().manual_seed(config.seed)
    # One thread (TrainConfig.threads): on tiny matrices two spinning threads were 40x slower.
    with deterministic_torch(config.seed, config.threads):
        features = model.features(data.x)
        targets = torch.nn.functional.one_hot(data.y, model.base.recipe.classes).float()
        for _ in range(config.steps):
            size = min(config.batch_size, len(data))
            batch = torch.randint(len(data), (size,), generator=generator)
            phi = features[batch]
            error = torch.softmax(phi @ weight + bias, dim=1) - targets[batch]
            weight -= config.lr * (phi.T @ error / size + config.weight_decay * weight)
            bias -= config.lr * error.mean(dim=0)
    return {"head.bias": bias.contiguous(), "head.weight": weight.contiguous()}


def synthetic_split(
    recipe: LinearRecipe, samples: int, class_mix: np.ndarray, seed: int
) -> LabelledData:
    """`samples` examples of the recipe's task whose labels follow `class_mix` (sums to 1):
    drawn from the teacher, kept per class until each class has its quota."""
    rng = np.random.default_rng(seed)
    quota = np.floor(class_mix * samples).astype(int)
    quota[np.argmax(class_mix)] += samples - quota.sum()
    base = base_from_recipe(recipe)
    teacher = _teacher(recipe)
    kept_x: list[np.ndarray] = []
    kept_y: list[np.ndarray] = []
    while quota.sum() > 0:
        x = rng.normal(size=(max(256, 4 * samples), recipe.features)).astype(np.float32)
        phi = torch.tanh(torch.from_numpy(x) @ base.projection).numpy()
        noise = rng.gumbel(size=(len(x), recipe.classes)) * recipe.label_noise
        y = np.argmax(phi @ teacher + noise, axis=1)
        for label in range(recipe.classes):
            take = np.flatnonzero(y == label)[: quota[label]]
            kept_x.append(x[take])
            kept_y.append(y[take])
            quota[label] -= len(take)
    order = rng.permutation(samples)
    return LabelledData(
        torch.from_numpy(np.concatenate(kept_x)[order]),
        torch.from_numpy(np.concatenate(kept_y)[order].astype(np.int64)),
    )


def edge_class_mix(recipe: LinearRecipe, edge: int, alpha: float) -> np.ndarray:
    """Edge `edge`'s label distribution: Dirichlet(alpha), small alpha = non-IID."""
    rng = np.random.default_rng([recipe.seed, edge])
    return rng.dirichlet(np.full(recipe.classes, alpha))


def balanced(recipe: LinearRecipe) -> np.ndarray:
    return np.full(recipe.classes, 1.0 / recipe.classes)


def save_data(directory: Path, train: LabelledData, validation: LabelledData) -> Path:
    """An edge's private data folder for the linear learner."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DATA_FILE
    tensors = (train.x, train.y, validation.x, validation.y)
    np.savez(path, **{k: v.numpy() for k, v in zip(_DATA_KEYS, tensors, strict=True)})
    return path


def load_data(directory: Path) -> tuple[LabelledData, LabelledData]:
    """(train, validation) from `save_data`'s file."""
    path = directory / DATA_FILE
    try:
        with np.load(path) as saved:
            arrays = {k: torch.from_numpy(saved[k]) for k in _DATA_KEYS}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read linear data {path}: {exc}") from None
    train = LabelledData(arrays["train_x"], arrays["train_y"])
    return train, LabelledData(arrays["val_x"], arrays["val_y"])


def base_from_recipe(recipe: LinearRecipe) -> LinearBase:
    """The frozen base a recipe describes (P from its seed)."""
    generator = torch.Generator().manual_seed(recipe.seed)
    scale = 2.0 / np.sqrt(recipe.features)  # tanh neither saturated nor linear
    projection = torch.randn(recipe.features, recipe.hidden, generator=generator) * scale
    return LinearBase(recipe, projection)


def _teacher(recipe: LinearRecipe) -> np.ndarray:
    rng = np.random.default_rng([recipe.seed, 1_000_003])
    return rng.normal(scale=3.0, size=(recipe.hidden, recipe.classes))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """A validator evaluates thousands of heads; on tiny matrices torch's spinning threads made
    each evaluation 30x slower on a busy machine (as TrainConfig.threads says for training)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _logits(adapter: Mapping[str, torch.Tensor], phi: torch.Tensor) -> torch.Tensor:
    return phi @ adapter["head.weight"] + adapter["head.bias"]
