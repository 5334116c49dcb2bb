"""The case study's chain-free arms: the pretrained base, each hospital alone, and all data
pooled centrally (the upper bound). The collaborative arm lives in `edgetune.agent`.

Every arm starts from the same initial adapter (`initial_global_adapter`: shared frozen A,
B = 0) on the same pinned base, trains in rounds of local steps (a fresh optimizer each round,
as an edge has in the protocol), and is scored on the same balanced test
set, so the arms differ only in whose data they see. Edges learn short answers ("Diagnosis: X.");
the full dialogue is kept for display and for a second ROUGE-L.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetune.casestudy.dialogues import (
    DIAGNOSIS_NAMES,
    answer_parts,
    diagnosis_of,
    mean_rouge,
)
from edgetune.casestudy.hospitals import (
    Hospital,
    Sample,
    balanced_test_set,
    label_skewed_hospitals,
    make_hospitals,
)
from edgetune.casestudy.pretrain import xray_caption_pairs
from edgetune.casestudy.results import (
    ArmResult,
    CaseStudyResults,
    DisplayCase,
    HospitalRow,
    Tensors,
)
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.xray import FINDINGS
from edgetune.learning import (
    class_balanced_weights,
    initial_global_adapter,
    resolve_base_model,
)
from edgetune.learning.evaluate import hit_rate
from edgetune.learning.vision.encode import VisionSample, encode_samples
from edgetune.learning.vision.evaluate import (
    answer_nll,
    default_max_length,
    predict_candidates,
)
from edgetune.learning.vision.model import (
    ALL_LINEAR,
    LM_HEAD,
    VisionAdaptedModel,
    VisionRecipe,
    attach_vlm_adapter,
    ensure_tiny_vlm,
    load_vlm,
    vlm_adapter_spec,
)
from edgetune.learning.vision.train import generate_answer, pretrain_base, train_vlm_update

# What an edge is taught to answer, and the candidates accuracy is scored against.
SHORT_ANSWERS: dict[str, str] = {f: f"Diagnosis: {DIAGNOSIS_NAMES[f]}." for f in FINDINGS}


@dataclass
class Cases:
    """One data set in the arms' format: short-answer `samples` (label = the image's true
    finding) and the full dialogue answers they were cut from, in the same order."""

    name: str
    samples: list[VisionSample]
    dialogues: list[str]
    noise_rate: float = 0.0

    @property
    def balanced_weights(self) -> list[float]:
        """Sampling weights that show each *labelled* finding equally often: a hospital knows
        its labels, not the truth (see `class_balanced_weights`)."""
        return class_balanced_weights([s.answer for s in self.samples])


def prepare_base(settings: CaseStudySettings, cache_dir: Path | None = None) -> Path:
    """The owner's pinned base: the VLM pre-trained on generic X-ray captions, aligned and then
    tuned end to end (cached by `pretrain_base`, so only the first call trains)."""
    raw = ensure_tiny_vlm(
        cache_dir,
        recipe=VisionRecipe(image_size=settings.image_size),
        language_model_dir=resolve_base_model(settings.language_model, cache_dir),
    )
    pairs = xray_caption_pairs(settings.pretrain_pairs, settings.pretrain_seed, settings.image_size)
    return pretrain_base(
        raw,
        pairs,
        steps=settings.pretrain_steps,
        cache_dir=cache_dir,
        batch_size=16,
        tune_steps=settings.pretrain_tune_steps,
    )


def hospital_samples(settings: CaseStudySettings) -> tuple[list[Cases], Cases]:
    """The hospitals' private data and the balanced test set, as `Cases`."""
    hospitals = scenario_hospitals(settings)[1]
    test = balanced_test_set(settings.test_per_class, settings.seed + 99, settings.image_size)
    return [_hospital_cases(h) for h in hospitals], to_cases("test", test)


def scenario_hospitals(settings: CaseStudySettings) -> tuple[int, list[Hospital]]:
    """The scenario's hospitals and the hospital seed that drew them: in "headroom" the first
    seed from `seed * 100` on at which every hospital lacks a finding (`label_skewed_hospitals`,
    case mixes only), in "dominant" `seed` itself."""
    args = (
        settings.hospitals,
        settings.hospital_sizes,
        settings.alpha,
        settings.seed,
        settings.noisy_hospital,
        settings.noise_rate,
        settings.image_size,
    )
    if settings.scenario == "headroom":
        return label_skewed_hospitals(*args)
    return settings.seed, make_hospitals(*args)


def _hospital_cases(hospital: Hospital) -> Cases:
    return to_cases(hospital.name, hospital.samples, hospital.spec.noise_rate)


def to_cases(name: str, samples: Sequence[Sample], noise_rate: float = 0.0) -> Cases:
    """Short answers name the *labelled* finding (what a noisy hospital teaches); the label
    field keeps the true one."""
    short = [
        VisionSample(
            s.xray.image, s.dialogue.question, SHORT_ANSWERS[s.labelled_finding], s.true_finding
        )
        for s in samples
    ]
    return Cases(name, short, [s.dialogue.answer for s in samples], noise_rate)


def load_adapted(base_dir: Path, settings: CaseStudySettings) -> VisionAdaptedModel:
    """The base with LoRA on every LM linear layer and the head (what makes the tiny VLM learn:
    see `LM_HEAD`), A initialised from `settings.seed`."""
    base = load_vlm(base_dir)
    spec = vlm_adapter_spec(
        base.model, rank=settings.rank, init_seed=settings.seed, modules=(*ALL_LINEAR, LM_HEAD)
    )
    return attach_vlm_adapter(base, spec)


def display_indices(test: Cases) -> dict[str, int]:
    """finding -> index of its fixed display case (the first test case of that finding)."""
    first: dict[str, int] = {}
    for i, sample in enumerate(test.samples):
        first.setdefault(sample.label, i)
    return first


def evaluate_arm(
    adapted: VisionAdaptedModel,
    test: Cases,
    adapter: Mapping[str, torch.Tensor],
    name: str = "arm",
    batch_size: int = 32,
    max_new_tokens: int = 24,
) -> ArmResult:
    """Score `adapter` on `test` (see `ArmResult` for each figure)."""
    adapted.set_adapter(adapter)
    max_length = default_max_length(adapted)
    own = answer_nll(
        adapted, encode_samples(adapted.processor, test.samples, max_length), batch_size
    )
    loss = sum(s for s, _ in own) / sum(c for _, c in own)
    predicted = predict_candidates(adapted, test.samples, SHORT_ANSWERS, batch_size, max_length)
    generated = [
        generate_answer(adapted, s.image, s.question, max_new_tokens) for s in test.samples
    ]
    labels = [s.label for s in test.samples]
    per_finding = {
        f: float(np.mean([p == f for p, t in zip(predicted, labels, strict=True) if t == f]))
        for f in FINDINGS
        if f in labels
    }
    return ArmResult(
        name=name,
        accuracy=hit_rate(predicted, labels),
        per_finding=per_finding,
        generated_accuracy=float(
            np.mean([diagnosis_of(g) == t for g, t in zip(generated, labels, strict=True)])
        ),
        loss=loss,
        rouge_l=mean_rouge(generated, [s.answer for s in test.samples]),
        rouge_l_dialogue=mean_rouge(generated, test.dialogues),
        complete_answers=float(np.mean([answer_parts(g).complete for g in generated])),
        dialogues={f: generated[i] for f, i in display_indices(test).items()},
        adapter={k: v.clone() for k, v in adapter.items()},
    )


def train_rounds(
    adapted: VisionAdaptedModel,
    start: Mapping[str, torch.Tensor],
    cases: Cases,
    settings: CaseStudySettings,
    steps_per_round: int,
    seed: int,
    rounds: int | None = None,
) -> Tensors:
    """`rounds` (default `settings.alone_rounds`) rounds of `train_vlm_update` on `cases`
    (class-balanced), each continuing from the last one's adapter with a fresh optimizer and
    its own seed; returns the full final adapter."""
    adapter = dict(start)
    for round_ in range(settings.alone_rounds if rounds is None else rounds):
        config = settings.train_config(steps_per_round, seed=seed * 1000 + round_)
        update = train_vlm_update(adapted, adapter, cases.samples, config, cases.balanced_weights)
        adapter = {**adapter, **update.tensors}
    return adapter


def base_arm(adapted: VisionAdaptedModel, test: Cases) -> ArmResult:
    """The pretrained base: the initial adapter (B = 0, so exactly the base model)."""
    start = time.perf_counter()
    result = evaluate_arm(adapted, test, initial_global_adapter(adapted), "base")
    result.wall_s = time.perf_counter() - start
    return result


def alone_arms(
    adapted: VisionAdaptedModel,
    hospitals: list[Cases],
    test: Cases,
    settings: CaseStudySettings,
) -> list[ArmResult]:
    """Each hospital trains alone on its own data for alone_rounds x alone_round_steps steps."""
    initial = initial_global_adapter(adapted)
    results = []
    for i, hospital in enumerate(hospitals):
        start = time.perf_counter()
        adapter = train_rounds(
            adapted, initial, hospital, settings, settings.alone_round_steps, seed=i + 1
        )
        result = evaluate_arm(adapted, test, adapter, f"alone: {hospital.name}")
        result.wall_s = time.perf_counter() - start
        results.append(result)
    return results


def pooled_arm(
    adapted: VisionAdaptedModel,
    hospitals: list[Cases],
    test: Cases,
    settings: CaseStudySettings,
) -> ArmResult:
    """All hospitals' data in one place, trained for the same total steps as all hospitals
    alone together (hospitals x alone_rounds x alone_round_steps)."""
    start = time.perf_counter()
    result = evaluate_arm(adapted, test, pooled_adapter(adapted, hospitals, settings), "pooled")
    result.wall_s = time.perf_counter() - start
    return result


def pooled_adapter(
    adapted: VisionAdaptedModel, hospitals: Sequence[Cases], settings: CaseStudySettings
) -> Tensors:
    pooled = Cases(
        "pooled",
        [s for h in hospitals for s in h.samples],
        [d for h in hospitals for d in h.dialogues],
    )
    steps = settings.alone_round_steps * len(hospitals)
    return train_rounds(adapted, initial_global_adapter(adapted), pooled, settings, steps, 0)


def leave_one_out(
    adapted: VisionAdaptedModel,
    hospitals: list[Cases],
    test: Cases,
    settings: CaseStudySettings,
    pooled: ArmResult,
) -> list[float]:
    """Each hospital's data value: `pooled`'s test accuracy minus that of the pooled training
    (same seed, same steps per hospital) over every other hospital's cases."""
    values = []
    for i in range(len(hospitals)):
        others = [h for j, h in enumerate(hospitals) if j != i]
        adapted.set_adapter(pooled_adapter(adapted, others, settings))
        predicted = predict_candidates(adapted, test.samples, SHORT_ANSWERS)
        values.append(pooled.accuracy - hit_rate(predicted, [s.label for s in test.samples]))
    return values


def hospital_rows(hospitals: list[Cases]) -> list[HospitalRow]:
    """Report rows for each hospital's data (the collaborative arm adds Shapley and reward)."""
    return [
        HospitalRow(
            name=h.name,
            size=len(h.samples),
            class_counts={f: sum(s.label == f for s in h.samples) for f in FINDINGS},
            noise_rate=h.noise_rate,
        )
        for h in hospitals
    ]


@dataclass
class PreparedArms:
    """What every arm shares: the pinned base, the hospitals' data, the test set, the model."""

    base_dir: Path
    hospitals: list[Cases]
    test: Cases
    adapted: VisionAdaptedModel
    wall_s: float


def prepare_arms(settings: CaseStudySettings, cache_dir: Path | None = None) -> PreparedArms:
    start = time.perf_counter()
    base_dir = prepare_base(settings, cache_dir)
    hospitals, test = hospital_samples(settings)
    adapted = load_adapted(base_dir, settings)
    return PreparedArms(base_dir, hospitals, test, adapted, time.perf_counter() - start)


def run_local_arms(
    settings: CaseStudySettings,
    cache_dir: Path | None = None,
    prepared: PreparedArms | None = None,
) -> CaseStudyResults:
    """Base, alone and pooled arms plus what the report needs besides the collaborative arm."""
    prepared = prepared or prepare_arms(settings, cache_dir)
    adapted, hospitals, test = prepared.adapted, prepared.hospitals, prepared.test
    base = base_arm(adapted, test)
    alone = alone_arms(adapted, hospitals, test, settings)
    pooled = pooled_arm(adapted, hospitals, test, settings)
    walls = {
        "prepare": prepared.wall_s,
        "base": base.wall_s,
        "alone": sum(r.wall_s for r in alone),
        "pooled": pooled.wall_s,
    }
    rows = hospital_rows(hospitals)
    if settings.leave_one_out and len(hospitals) > 1:
        start = time.perf_counter()
        for row, value in zip(
            rows, leave_one_out(adapted, hospitals, test, settings, pooled), strict=False
        ):
            row.loo_value = value
        walls["leave-one-out"] = time.perf_counter() - start
    return CaseStudyResults(
        settings=settings,
        base_model=str(prepared.base_dir),
        base=base,
        alone=alone,
        pooled=pooled,
        hospitals=rows,
        display=display_cases(test),
        wall_times=walls,
    )


def display_cases(test: Cases) -> list[DisplayCase]:
    """One fixed test case per finding, in `FINDINGS` order."""
    return [
        DisplayCase(f, test.samples[i].image, test.samples[i].question, test.dialogues[i])
        for f, i in display_indices(test).items()
    ]
