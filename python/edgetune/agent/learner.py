"""What an edge agent needs from its model, and nothing more: the adapter's layout, one round of
local training, and a validation score. The agent's protocol code is the same for a text model
(`TextLearner`) and, say, a vision-language model."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import torch

from edgetune.learning import AdaptedModel, Example, TrainConfig, evaluate, train_update
from edgetune.learning.linear import LabelledData, LinearModel, train_linear
from edgetune.learning.vision.encode import VisionSample
from edgetune.learning.vision.evaluate import candidate_accuracy, evaluate_vlm
from edgetune.learning.vision.model import VisionAdaptedModel
from edgetune.learning.vision.train import train_vlm_update

Tensors = dict[str, torch.Tensor]


class Learner(Protocol):
    def shapes(self, trained_only: bool = False) -> dict[str, tuple[int, ...]]:
        """Adapter tensor names and shapes; `trained_only`: what an update carries."""

    def train(self, global_adapter: Mapping[str, torch.Tensor], round_: int) -> Tensors:
        """Train from the global adapter on private data; return the exchanged tensors."""

    def metric(self, adapter: Mapping[str, torch.Tensor]) -> float:
        """The model with `adapter`, scored on private validation data; higher is better."""


@dataclass
class TextLearner:
    """A causal LM with LoRA, trained on prompt/response pairs."""

    adapted: AdaptedModel
    train_examples: Sequence[Example]
    validation_examples: Sequence[Example]
    config: TrainConfig
    # The Shapley utility. Validation loss by default: accuracy on a small validation set moves
    # in coarse steps, and many coalitions would tie.
    score: Literal["loss", "accuracy"] = "loss"

    def shapes(self, trained_only: bool = False) -> dict[str, tuple[int, ...]]:
        return self.adapted.shapes(trained_only=trained_only)

    def train(self, global_adapter: Mapping[str, torch.Tensor], round_: int) -> Tensors:
        config = replace(self.config, seed=self.config.seed + round_)
        return train_update(self.adapted, global_adapter, self.train_examples, config).tensors

    def metric(self, adapter: Mapping[str, torch.Tensor]) -> float:
        result = evaluate(self.adapted, self.validation_examples, adapter)
        return -result.loss if self.score == "loss" else result.metric


@dataclass
class VisionLearner:
    """A LLaVA-style vision-language model with LoRA on its language model, trained on
    (image, question, answer) samples."""

    adapted: VisionAdaptedModel
    train_samples: Sequence[VisionSample]
    validation_samples: Sequence[VisionSample]
    config: TrainConfig
    # Per training sample, how often it is drawn (`class_balanced_weights`); None: evenly.
    sample_weights: Sequence[float] | None = None
    # The Shapley utility. Given `candidates` (label -> answer), accuracy by candidate
    # likelihood on the validation samples: in the case study (diagnosis candidates) answer-token
    # loss mostly measures the answer *format* that even wrongly labelled data teaches (a
    # 60%-noisy hospital earned most under it), and diagnosis log-loss charges a confident
    # mistake without bound (the one hospital rich in normal cases, whose update shifts the
    # prior towards "normal", scored -3 to -7 nats and was left out of every round). Without
    # candidates: minus answer-token loss.
    candidates: Mapping[str, str] | None = None

    def shapes(self, trained_only: bool = False) -> dict[str, tuple[int, ...]]:
        return self.adapted.shapes(trained_only=trained_only)

    def train(self, global_adapter: Mapping[str, torch.Tensor], round_: int) -> Tensors:
        config = replace(self.config, seed=self.config.seed + round_)
        return train_vlm_update(
            self.adapted, global_adapter, self.train_samples, config, self.sample_weights
        ).tensors

    def metric(self, adapter: Mapping[str, torch.Tensor]) -> float:
        if self.candidates:
            return candidate_accuracy(
                self.adapted, self.validation_samples, self.candidates, adapter
            )
        return -evaluate_vlm(self.adapted, self.validation_samples, adapter).loss


@dataclass
class LinearLearner:
    """The cheap learner that lets one process simulate hundreds of edges (learning/linear.py):
    a logistic-regression head over a frozen random feature map, trained on synthetic data. Its
    updates, content and Shapley scores go through exactly the agent code a LoRA edge's do."""

    adapted: LinearModel
    train_data: LabelledData
    validation_data: LabelledData
    config: TrainConfig

    def __post_init__(self) -> None:
        self._validation = self.adapted.featurize(self.validation_data)

    def shapes(self, trained_only: bool = False) -> dict[str, tuple[int, ...]]:
        return self.adapted.shapes(trained_only=trained_only)

    def train(self, global_adapter: Mapping[str, torch.Tensor], round_: int) -> Tensors:
        config = replace(self.config, seed=self.config.seed + round_)
        return train_linear(self.adapted, global_adapter, self.train_data, config)

    def metric(self, adapter: Mapping[str, torch.Tensor]) -> float:
        """Minus validation cross-entropy, the text learner's default utility."""
        return -self._validation.loss(adapter)
