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
    prompt_ids,
    to_rgb_uint8,
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
        answers = [answer for _, answer in queries[: len(candidates)]]
        prompted = [sample for sample, _ in queries[:: len(candidates)]]
        scores = candidate_nll(adapted, prompted, answers, batch_size, max_length)
        return [score for row in scores for score in row]

    return candidate_predictions(nll, samples, candidates)


@torch.no_grad()
def candidate_nll(
    adapted: VisionAdaptedModel,
    samples: Sequence[VisionSample],
    answers: Sequence[str],
    batch_size: int,
    max_length: int,
) -> list[list[float]]:
    """Per sample, the summed NLL (float64 log-softmax) of each answer after its prompt, as
    `answer_nll` of `encode_samples(..., eos=False)` rows gives it. The prompt (image tokens and
    question, ~85% of a row) runs once per sample and its key/value cache serves every answer:
    a full pass per (sample, answer) cost the candidate count times as much, and candidate
    scoring is most of what a validator's Shapley utility spends."""
    tokenizer = adapted.tokenizer
    answer_ids = [
        tokenizer(a if a.startswith(" ") else f" {a}", add_special_tokens=False)["input_ids"]
        for a in answers
    ]
    by_question: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_question.setdefault(sample.question, []).append(index)
    out: list[list[float]] = [[] for _ in samples]
    adapted.model.eval()
    with deterministic_torch(0):
        for question, indices in by_question.items():
            prompt = prompt_ids(adapted.processor, samples[indices[0]].image, question)
            if len(prompt) >= max_length:
                raise DataError(
                    f"prompt of {len(prompt)} tokens does not fit max_length {max_length}"
                )
            fitted = [ids[: max_length - len(prompt)] for ids in answer_ids]
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                scores = _prefixed_nll(adapted, prompt, [samples[i].image for i in chunk], fitted)
                for i, row in zip(chunk, scores, strict=True):
                    out[i] = row
    return out


def _prefixed_nll(
    adapted: VisionAdaptedModel, prompt: list[int], images: list, answers: list[list[int]]
) -> list[list[float]]:
    """One batch of images sharing `prompt`: each image's NLL of every answer."""
    model, count = adapted.model, len(images)
    pixels = adapted.processor.image_processor(
        [to_rgb_uint8(image) for image in images], return_tensors="pt"
    )["pixel_values"]
    first = model(
        input_ids=torch.tensor([prompt] * count),
        attention_mask=torch.ones(count, len(prompt), dtype=torch.long),
        pixel_values=pixels,
        use_cache=True,
    )
    first_logprobs = torch.log_softmax(first.logits[:, -1].double(), dim=-1)
    cache = first.cache
    cache.batch_repeat_interleave(len(answers))
    width = max(len(ids) for ids in answers)
    pad = adapted.tokenizer.pad_token_id
    rows = torch.tensor([ids + [pad] * (width - len(ids)) for _ in images for ids in answers])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in answers] * count)
    rest = model(
        input_ids=rows,
        attention_mask=torch.cat([torch.ones(len(rows), len(prompt), dtype=torch.long), mask], 1),
        cache=cache,
        use_cache=True,
    )
    logprobs = torch.log_softmax(rest.logits[:, :-1].double(), dim=-1)
    picked = logprobs.gather(-1, rows[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
    heads = torch.tensor([ids[0] for ids in answers] * count)
    head = first_logprobs.repeat_interleave(len(answers), 0).gather(-1, heads[:, None])[:, 0]
    nll = -(head + picked.sum(-1))
    return [nll[b * len(answers) : (b + 1) * len(answers)].tolist() for b in range(count)]


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
