"""Validating the VLM: mean answer-token loss, and accuracy by candidate likelihood (the text
model's `CandidateScoring`, fed with this model's answer NLLs)."""

from collections.abc import Mapping, Sequence

import torch

from edgetune.learning import DataError, EvalResult
from edgetune.learning.evaluate import candidate_predictions, hit_rate, labelled_nll
from edgetune.learning.model import deterministic_torch
from edgetune.learning.vision.encode import (
    EncodedRow,
    Sample,
    VisionSample,
    collate_rows,
    encode_samples,
)
from edgetune.learning.vision.model import VisionAdaptedModel

# Room for question and answer after the image tokens (the case study's settings use the same).
TEXT_TOKENS = 128


def evaluate_vlm(
    adapted: VisionAdaptedModel,
    samples: Sequence[Sample],
    adapter: Mapping[str, torch.Tensor] | None = None,
    candidates: Mapping[str, str] | None = None,
    batch_size: int = 32,
    max_length: int = 256,
) -> EvalResult:
    """Mean answer-token loss and, given `candidates` (label -> answer prefix), accuracy.

    A labelled sample is correct when its own label's prefix has the lowest summed NLL after
    the prompt among all candidates (`predict_candidates`). Without candidates or labels,
    accuracy is None.
    """
    if not samples:
        raise DataError("evaluate_vlm needs at least one sample")
    samples = [VisionSample(*s) for s in samples]
    if adapter is not None:
        adapted.set_adapter(adapter)
    own = encode_samples(adapted.processor, samples, max_length)
    nll = answer_nll(adapted, own, batch_size)
    loss = sum(s for s, _ in nll) / sum(c for _, c in nll)
    labelled = [s for s in samples if s.label is not None]
    if not candidates or not labelled:
        return EvalResult(loss=loss, accuracy=None, n_examples=len(samples))
    predicted = predict_candidates(adapted, labelled, candidates, batch_size, max_length)
    accuracy = hit_rate(predicted, [s.label for s in labelled])
    return EvalResult(loss=loss, accuracy=accuracy, n_examples=len(samples))


def candidate_accuracy(
    adapted: VisionAdaptedModel,
    samples: Sequence[VisionSample],
    candidates: Mapping[str, str],
    adapter: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 32,
) -> float:
    """Fraction of `samples` whose label's candidate answer scores best (`predict_candidates`),
    without the loss pass `evaluate_vlm` adds: what a validator's utility needs per coalition."""
    if adapter is not None:
        adapted.set_adapter(adapter)
    predicted = predict_candidates(adapted, samples, candidates, batch_size)
    return hit_rate(predicted, [s.label for s in samples])


def predict_candidates(
    adapted: VisionAdaptedModel,
    samples: Sequence[VisionSample],
    candidates: Mapping[str, str],
    batch_size: int = 32,
    max_length: int | None = None,
) -> list[str]:
    """Per sample, the candidate (name -> answer prefix, scored without EOS) with the lowest
    summed NLL after the sample's image and question."""
    max_length = max_length or default_max_length(adapted)

    def nll(queries: list[tuple[VisionSample, str]]) -> list[float]:
        triples = [(s.image, s.question, answer) for s, answer in queries]
        rows = encode_samples(adapted.processor, triples, max_length, eos=False)
        return [score for score, _ in answer_nll(adapted, rows, batch_size)]

    return candidate_predictions(nll, samples, candidates)


def default_max_length(adapted: VisionAdaptedModel) -> int:
    """Token budget per sample when none is given: the image tokens plus `TEXT_TOKENS`."""
    return adapted.model.config.image_seq_length + TEXT_TOKENS


@torch.no_grad()
def answer_nll(
    adapted: VisionAdaptedModel, rows: list[EncodedRow], batch_size: int
) -> list[tuple[float, int]]:
    """Summed answer NLL (float64 log-softmax) and answer token count of each row."""
    out = []
    adapted.model.eval()
    with deterministic_torch(0):
        for start in range(0, len(rows), batch_size):
            batch = collate_rows(rows[start : start + batch_size], adapted.tokenizer.pad_token_id)
            labels = batch.pop("labels")
            out += labelled_nll(adapted.model(**batch).logits, labels)
    return out
