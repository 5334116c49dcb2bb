"""Non-IID hospitals: each draws its case mix from a Dirichlet(alpha) over the findings, holds
its own number of cases, and one may label carelessly, so hospitals' data genuinely differ in
value — what the Shapley rewards are meant to notice.

A noisy label changes the dialogue only: the image keeps its true finding, so every sample
records both `true_finding` (the image) and `labelled_finding` (what the answer teaches).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgetune.casestudy.dialogues import Dialogue, make_dialogue
from edgetune.casestudy.xray import (
    FINDINGS,
    LATERAL_FINDINGS,
    SIDES,
    CaseStudyDataError,
    XRay,
    generate_set,
)


class Sample(NamedTuple):
    """One case: the radiograph and the dialogue a model is trained or scored on."""

    xray: XRay
    dialogue: Dialogue

    @property
    def true_finding(self) -> str:
        return self.xray.finding

    @property
    def labelled_finding(self) -> str:
        return self.dialogue.finding


@dataclass(frozen=True)
class HospitalSpec:
    """What a hospital was drawn to be: its size, its case mix over FINDINGS (a Dirichlet draw
    with concentration `alpha`) and how often its answers name a wrong finding."""

    name: str
    size: int
    alpha: float
    class_mix: tuple[float, ...]
    noise_rate: float = 0.0


@dataclass(eq=False)
class Hospital:
    """A hospital's private data set."""

    spec: HospitalSpec
    samples: list[Sample]

    @property
    def name(self) -> str:
        return self.spec.name

    def class_counts(self) -> dict[str, int]:
        """Cases per true finding, every finding listed."""
        counts = Counter(s.true_finding for s in self.samples)
        return {f: counts[f] for f in FINDINGS}

    def label_noise(self) -> float:
        """Measured fraction of samples whose answer names the wrong finding."""
        wrong = sum(s.true_finding != s.labelled_finding for s in self.samples)
        return wrong / max(len(self.samples), 1)


def make_hospitals(
    n_hospitals: int,
    sizes: Sequence[int],
    alpha: float,
    seed: int,
    noisy_hospital: int | None = None,
    noise_rate: float = 0.0,
    image_size: int = 64,
) -> list[Hospital]:
    """`n_hospitals` hospitals with Dirichlet(alpha) case mixes and the given sizes; hospital
    `noisy_hospital` (an index, or None) mislabels each answer with probability `noise_rate`."""
    _check(n_hospitals, sizes, alpha, noisy_hospital, noise_rate)
    children = np.random.SeedSequence(seed).spawn(n_hospitals)
    hospitals = []
    for i, (child, size) in enumerate(zip(children, sizes, strict=True)):
        mix_seed, image_seed, text_seed = child.spawn(3)
        mix = np.random.default_rng(mix_seed).dirichlet(np.full(len(FINDINGS), alpha))
        rate = noise_rate if i == noisy_hospital else 0.0
        spec = HospitalSpec(f"hospital-{i}", size, alpha, tuple(float(p) for p in mix), rate)
        xrays = generate_set(size, _int_seed(image_seed), image_size, class_weights=tuple(mix))
        samples = _pair(xrays, np.random.default_rng(text_seed), rate)
        hospitals.append(Hospital(spec, samples))
    return hospitals


def lacked_findings(hospital: Hospital, at_most: int = 2) -> list[str]:
    """The findings this hospital has at most `at_most` cases of (by true finding): what it
    lacks or nearly lacks."""
    return [f for f, n in hospital.class_counts().items() if n <= at_most]


def label_skewed_hospitals(
    n_hospitals: int,
    sizes: Sequence[int],
    alpha: float,
    seed: int,
    noisy_hospital: int | None = None,
    noise_rate: float = 0.0,
    image_size: int = 64,
    at_most: int = 2,
    tries: int = 100,
) -> tuple[int, list[Hospital]]:
    """`make_hospitals` at the first hospital seed from `seed * tries` on at which every
    hospital lacks a finding (`lacked_findings`): the label-skewed scenario, defined by the
    draw of case mixes alone (no test set is looked at). Returns the seed used and the
    hospitals."""
    for candidate in range(seed * tries, (seed + 1) * tries):
        hospitals = make_hospitals(
            n_hospitals, sizes, alpha, candidate, noisy_hospital, noise_rate, image_size
        )
        if all(lacked_findings(h, at_most) for h in hospitals):
            return candidate, hospitals
    raise CaseStudyDataError(
        f"no seed in [{seed * tries}, {(seed + 1) * tries}) skews every hospital"
    )


def balanced_test_set(n_per_class: int, seed: int, size: int = 64) -> list[Sample]:
    """`n_per_class` correctly labelled cases of every finding, grouped by finding."""
    children = np.random.SeedSequence(seed).spawn(len(FINDINGS) + 1)
    xrays = [
        xray
        for finding, child in zip(FINDINGS, children, strict=False)
        for xray in generate_set(n_per_class, _int_seed(child), size, findings=(finding,))
    ]
    return _pair(xrays, np.random.default_rng(children[-1]), 0.0)


def _pair(xrays: list[XRay], rng: np.random.Generator, noise_rate: float) -> list[Sample]:
    """A dialogue for each image, naming a uniformly drawn wrong finding with `noise_rate`."""
    samples = []
    for xray in xrays:
        label, side, ctr = xray.finding, xray.side, xray.ctr
        if rng.random() < noise_rate:
            label = str(rng.choice([f for f in FINDINGS if f != xray.finding]))
            ctr = None  # the measured ratio would contradict the wrong label
            if label in LATERAL_FINDINGS and side is None:
                side = SIDES[int(rng.integers(len(SIDES)))]
        samples.append(Sample(xray, make_dialogue(label, rng, side, ctr)))
    return samples


def _int_seed(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(2, np.uint64)[0] >> np.uint64(1))


def _check(
    n: int, sizes: Sequence[int], alpha: float, noisy: int | None, noise_rate: float
) -> None:
    if n < 1 or len(sizes) != n or any(s < 1 for s in sizes):
        raise CaseStudyDataError(f"need {n} positive hospital sizes, got {list(sizes)}")
    if alpha <= 0:
        raise CaseStudyDataError(f"Dirichlet alpha must be positive, got {alpha}")
    if noisy is not None and not 0 <= noisy < n:
        raise CaseStudyDataError(f"noisy_hospital {noisy} is not an index below {n}")
    if not 0 <= noise_rate <= 1:
        raise CaseStudyDataError(f"noise_rate {noise_rate} is not in [0, 1]")
