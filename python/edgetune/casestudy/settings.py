"""What decides the case study's numbers: `CaseStudySettings`, with the two documented runs."""

from dataclasses import dataclass
from typing import Literal

from edgetune.errors import EdgetuneError
from edgetune.learning import TrainConfig
from edgetune.learning.vision.evaluate import TEXT_TOKENS
from edgetune.learning.vision.model import VisionRecipe


class CaseStudySettingsError(EdgetuneError):
    """A case-study setting is out of range."""


@dataclass(frozen=True)
class CaseStudySettings:
    """Everything that decides the case study's numbers; `quick()` and `full()` are the two
    documented runs. Pre-training knobs are the owner's and name the cached base model."""

    quick: bool
    language_model: str = "tiny"  # or "smollm2", or a causal LM folder (see resolve_base_model)
    image_size: int = 64
    hospitals: int = 3
    hospital_sizes: tuple[int, ...] = (160, 100, 100)
    alpha: float = 0.5
    noisy_hospital: int | None = 2
    noise_rate: float = 0.6
    test_per_class: int = 20
    rounds: int = 5
    steps_per_round: int = 30
    lr: float = 1e-2
    rank: int = 8
    batch_size: int = 16
    seed: int = 0
    pretrain_pairs: int = 2000
    pretrain_steps: int = 1200  # vision tower + projector, language model frozen
    pretrain_tune_steps: int = 1200  # then everything, language model included
    pretrain_seed: int = 12345
    # The collaborative arm: each hospital's audit set, and how far below zero (in accuracy on
    # it) an update's Shapley value may fall before validators leave it out. 0.1 is 4 of the
    # 40 audit cases; at 0.05 (2 cases) validators' verdicts on marginal updates differed and
    # the first round found no consensus.
    validation_per_class: int = 8
    harm_tolerance: float = 0.1
    # What validators score updates by: diagnosis accuracy on the audit cases (the case
    # study's choice, see VisionLearner), or answer loss, which toy-scale runs need: with a few
    # audit cases and steps accuracy does not move, every Shapley value is 0, and v2 pays a
    # zero median nothing.
    utility: Literal["accuracy", "loss"] = "accuracy"

    def __post_init__(self) -> None:
        checks = {
            "hospitals >= 1": self.hospitals >= 1,
            "one positive size per hospital": len(self.hospital_sizes) == self.hospitals
            and all(s >= 1 for s in self.hospital_sizes),
            "alpha > 0": self.alpha > 0,
            "noisy_hospital is a hospital index or None": self.noisy_hospital is None
            or 0 <= self.noisy_hospital < self.hospitals,
            "noise_rate in [0, 1]": 0 <= self.noise_rate <= 1,
            "test_per_class >= 1": self.test_per_class >= 1,
            "rounds >= 1 and steps_per_round >= 1": self.rounds >= 1 and self.steps_per_round >= 1,
            "lr > 0": self.lr > 0,
            "rank >= 1 and batch_size >= 1": self.rank >= 1 and self.batch_size >= 1,
            "image_size a positive multiple of 8": self.image_size > 0 and self.image_size % 8 == 0,
            "pretrain_pairs >= 1, pretrain_steps >= 1, pretrain_tune_steps >= 0": (
                self.pretrain_pairs >= 1
                and self.pretrain_steps >= 1
                and self.pretrain_tune_steps >= 0
            ),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise CaseStudySettingsError(f"case-study settings violate: {', '.join(failed)}")

    @classmethod
    def quick_run(cls) -> "CaseStudySettings":
        """The quick run: all four arms in under 10 minutes on 2 CPU cores."""
        return cls(quick=True)

    @classmethod
    def full_run(cls) -> "CaseStudySettings":
        """The full run: more hospitals, data, test cases and rounds (takes longer)."""
        return cls(
            quick=False,
            hospitals=4,
            hospital_sizes=(400, 250, 150, 150),
            noisy_hospital=3,
            test_per_class=50,
            rounds=10,
            steps_per_round=40,
        )

    @property
    def max_length(self) -> int:
        """Token budget per sample: every image token plus room for question and answer."""
        return VisionRecipe(image_size=self.image_size).image_tokens + TEXT_TOKENS

    def train_config(
        self,
        steps: int,
        seed: int,
        prox_mu: float = 0.0,
        lacking_answers: tuple[tuple[int, ...], ...] = (),
    ) -> TrainConfig:
        """One hospital's local training for `steps` steps: these settings' batch size, learning
        rate and token budget (the remedies default to off, as in TrainConfig)."""
        return TrainConfig(
            steps=steps,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            max_length=self.max_length,
            prox_mu=prox_mu,
            lacking_answers=lacking_answers,
        )
