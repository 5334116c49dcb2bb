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
    prompts: dict[str, list[int]] = {}
    for sample in samples:
        if sample.question not in prompts:
            prompt = prompt_ids(adapted.processor, sample.image, sample.question)
            if len(prompt) >= max_length:
                raise DataError(
                    f"prompt of {len(prompt)} tokens does not fit max_length {max_length}"
                )
            prompts[sample.question] = prompt
    out: list[list[float]] = []
    adapted.model.eval()
    with deterministic_torch(0):
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            batch = [prompts[s.question] for s in chunk]
            out += _prefixed_nll(adapted, batch, [s.image for s in chunk], answer_ids, max_length)
    return out


def _prefixed_nll(
    adapted: VisionAdaptedModel,
    prompts: list[list[int]],
    images: list,
    answers: list[list[int]],
    max_length: int,
) -> list[list[float]]:
    """One batch: each image's NLL of every answer after its own prompt. Prompts of unequal
    length are right-padded and masked, and every token gets its unpadded position, so the
    padding changes no result."""
    model, pad, count = adapted.model, adapted.tokenizer.pad_token_id, len(images)
    lengths = torch.tensor([len(p) for p in prompts])
    width = int(lengths.max())
    prompt_mask = (torch.arange(width) < lengths[:, None]).long()
    pixels = adapted.processor.image_processor(
        [to_rgb_uint8(image) for image in images], return_tensors="pt"
    )["pixel_values"]
    device = model.device
    first = model(
        input_ids=torch.tensor([p + [pad] * (width - len(p)) for p in prompts], device=device),
        attention_mask=prompt_mask.to(device),
        position_ids=(torch.arange(width).expand(count, width) * prompt_mask).to(device),
        pixel_values=pixels.to(device),
        use_cache=True,
    )
    last = first.logits[torch.arange(count), lengths - 1].cpu()
    first_logprobs = torch.log_softmax(last.double(), dim=-1)
    cache = first.cache
    cache.batch_repeat_interleave(len(answers))
    # An answer is cut where the row would pass max_length, as `encode_samples` cuts it.
    fitted = [[ids[: max_length - len(p)] for ids in answers] for p in prompts]
    tail = max(len(ids) for row in fitted for ids in row)
    rows = torch.tensor([ids + [pad] * (tail - len(ids)) for row in fitted for ids in row])
    mask = torch.tensor([[1] * len(ids) + [0] * (tail - len(ids)) for row in fitted for ids in row])
    starts = lengths.repeat_interleave(len(answers))
    rest = model(
        input_ids=rows.to(device),
        attention_mask=torch.cat([prompt_mask.repeat_interleave(len(answers), 0), mask], 1).to(
            device
        ),
        position_ids=(starts[:, None] + torch.arange(tail)).to(device),
        cache=cache,
        use_cache=True,
    )
    logprobs = torch.log_softmax(rest.logits[:, :-1].cpu().double(), dim=-1)
    picked = logprobs.gather(-1, rows[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
    head = first_logprobs.repeat_interleave(len(answers), 0).gather(-1, rows[:, :1])[:, 0]
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
            batch = {k: v.to(adapted.model.device) for k, v in batch.items()}
            out += labelled_nll(adapted.model(**batch).logits.cpu(), labels)
    return out
