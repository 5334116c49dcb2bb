"""Per-class X-ray diagnosis accuracy of the tiny VLM after one edge's LM-only LoRA round, on
the owner's base after alignment alone (vision tower + projector captioning generic X-ray signs
with the LM frozen) and after alignment plus tuning (everything, LM included): the case study's.

Run: .venv/bin/python bench/bench_vlm_xray.py [steps] [lr] [answers: full|short] [head: 1|0]
Edge: one hospital of ~300 cases, LoRA on every LM linear layer (+ the head unless head=0).
Prints accuracy per finding on the edge's own data and on the balanced test set, and seconds per
step. Both bases are cached after the first run.
"""

import sys
import time
from collections import Counter
from dataclasses import replace

from edgetune.casestudy.arms import SHORT_ANSWERS, prepare_base
from edgetune.casestudy.hospitals import balanced_test_set, make_hospitals
from edgetune.casestudy.settings import CaseStudySettings
from edgetune.casestudy.xray import FINDINGS
from edgetune.learning import TrainConfig, initial_global_adapter
from edgetune.learning.vision.encode import VisionSample
from edgetune.learning.vision.evaluate import predict_candidates
from edgetune.learning.vision.model import (
    ALL_LINEAR,
    LM_HEAD,
    attach_vlm_adapter,
    load_vlm,
    vlm_adapter_spec,
)
from edgetune.learning.vision.train import train_vlm_update


def _samples(cases: list, short: bool) -> list[VisionSample]:
    return [
        VisionSample(
            c.xray.image,
            c.dialogue.question,
            SHORT_ANSWERS[c.labelled_finding] if short else c.dialogue.answer,
            c.true_finding,
        )
        for c in cases
    ]


def _per_class(adapted, samples: list[VisionSample]) -> dict[str, tuple[int, int, str]]:
    """finding -> (correct, total, most predicted) by candidate scoring (`predict_candidates`)."""
    predicted: dict[str, Counter] = {f: Counter() for f in FINDINGS}
    for sample, guess in zip(
        samples, predict_candidates(adapted, samples, SHORT_ANSWERS, 64, 256), strict=True
    ):
        predicted[sample.label][guess] += 1
    return {
        f: (c[f], sum(c.values()), c.most_common(1)[0][0] if c else "-")
        for f, c in predicted.items()
    }


def _table(title: str, result: dict[str, tuple[int, int, str]]) -> None:
    print(f"\n{title}\n{'finding':<14}{'acc':>6}{'n':>5}  most predicted")
    for finding, (hits, n, top) in result.items():
        print(f"{finding:<14}{hits / max(n, 1):>6.2f}{n:>5}  {top}")
    total = sum(h for h, _, _ in result.values()) / sum(n for _, n, _ in result.values())
    print(f"{'overall':<14}{total:>6.2f}")


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-2
    short = len(sys.argv) > 3 and sys.argv[3] == "short"
    head = not (len(sys.argv) > 4 and sys.argv[4] == "0")
    edge = _samples(make_hospitals(1, [300], alpha=100.0, seed=1)[0].samples, short)
    test = _samples(balanced_test_set(20, seed=99), short)
    settings = CaseStudySettings.quick_run()
    for stage, owner in (
        ("alignment only", replace(settings, pretrain_tune_steps=0)),
        ("alignment + tuning", settings),
    ):
        start = time.perf_counter()
        base = load_vlm(prepare_base(owner))
        print(f"\n== base: {stage} (pre-training {time.perf_counter() - start:.1f} s) ==")
        modules = (*ALL_LINEAR, LM_HEAD) if head else ALL_LINEAR
        adapted = attach_vlm_adapter(base, vlm_adapter_spec(base.model, modules=modules))
        config = TrainConfig(steps=steps, batch_size=16, lr=lr, max_length=256)
        start = time.perf_counter()
        result = train_vlm_update(adapted, initial_global_adapter(adapted), edge, config)
        per_step = (time.perf_counter() - start) / steps
        print(f"{steps} steps, lr {lr}, answers {'short' if short else 'full'}, head LoRA {head}")
        print(f"{per_step:.3f} s/step (batch 16), final loss {result.losses[-1]:.3f}")
        _table("edge's own 300 cases (training data)", _per_class(adapted, edge))
        _table("balanced test set (20 per finding)", _per_class(adapted, test))


if __name__ == "__main__":
    main()
