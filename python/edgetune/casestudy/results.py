"""The case study's results, as the report reads them: each arm's figures, the hospitals' data
with what the collaborative run paid them (wei), and the task's pool. `run_local_arms` fills
everything but the collaborative parts, which `run_case_study` adds."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgetune.casestudy.settings import CaseStudySettings

if TYPE_CHECKING:
    from edgetune.agent.federation import FederationResult

ETHER = 10**18  # wei
Tensors = dict[str, torch.Tensor]


@dataclass
class ArmResult:
    """One arm on the balanced test set.

    `accuracy`/`per_finding`: candidate-scored (the lowest-NLL "Diagnosis: X." wins);
    `generated_accuracy`: the diagnosis `diagnosis_of` reads from the greedy answer;
    `loss`: mean NLL per reference answer token; `rouge_l`: F1 of greedy answers against the
    short reference they were taught, `rouge_l_dialogue` against the full reference dialogue;
    `complete_answers`: share of greedy answers that state a sign, the diagnosis and a next step
    of that diagnosis (`answer_parts`), as the references do;
    `dialogues`: finding -> greedy answer for that finding's display case."""

    name: str
    accuracy: float
    per_finding: dict[str, float]
    generated_accuracy: float
    loss: float
    rouge_l: float
    rouge_l_dialogue: float
    complete_answers: float
    dialogues: dict[str, str]
    wall_s: float = 0.0
    adapter: Tensors | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DisplayCase:
    """A test image shown in the report with its question and reference dialogue answer."""

    finding: str
    image: np.ndarray
    question: str
    reference: str


@dataclass
class HospitalRow:
    """One hospital's data in the report; the collaborative run adds its median Shapley score
    by round (from round 1; None: its update was left out as harmful, or the round found no
    consensus) and its on-chain reward; `loo_value` is its data's leave-one-out value
    (`leave_one_out`)."""

    name: str
    size: int
    class_counts: dict[str, int]  # finding -> labelled cases
    noise_rate: float
    shapley_by_round: list[float | None] | None = None
    reward_wei: int | None = None
    loo_value: float | None = None

    @property
    def noisy(self) -> bool:
        return self.noise_rate > 0


@dataclass(frozen=True)
class Pool:
    """The task's pool: what the owner funded, what the contract paid out, and the rounds whose
    vote found no consensus."""

    funded_wei: int
    paid_wei: int
    rejected_rounds: list[int]


@dataclass
class CaseStudyResults:
    """Everything the report is written from; `collaborative`, `by_round` (round, test
    accuracy) and `pool` are absent until the collaborative arm has run."""

    settings: CaseStudySettings
    base_model: str  # the pinned base model folder
    base: ArmResult
    alone: list[ArmResult]  # one per hospital, in hospital order
    pooled: ArmResult
    hospitals: list[HospitalRow]  # in hospital order
    display: list[DisplayCase]  # one test case per finding, shown with each arm's answer
    wall_times: dict[str, float]  # stage -> seconds, every stage that ran
    collaborative: ArmResult | None = None
    by_round: list[tuple[int, float]] = field(default_factory=list)
    pool: Pool | None = None
    # The collaborative run itself (chain client, task, store), for whoever checks the report
    # against the chain.
    federation: "FederationResult | None" = field(default=None, repr=False)

    @property
    def arms(self) -> list[ArmResult]:
        """The arms in report order: base, each hospital alone, collaborative (if run), pooled."""
        collaborative = [self.collaborative] if self.collaborative else []
        return [self.base, *self.alone, *collaborative, self.pooled]
