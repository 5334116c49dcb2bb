"""Encoding (image, question, answer) samples for the LLaVA-style VLM: the processor's chat
template around one image and the question, the answer tokenised after it, and batches of them.

Training, scoring and generation all go through `encode_samples`/`prompt_ids`, so they see the
same prompt ids. Grayscale images are replicated to three channels (what any pretrained RGB
tower expects).
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from transformers import LlavaProcessor

from edgetune.learning.errors import DataError
from edgetune.learning.train import IGNORE


class VisionSample(NamedTuple):
    """One image with a question and its reference answer; `label` names the class if known."""

    image: np.ndarray
    question: str
    answer: str
    label: str | None = None


# What the encoders take: a `VisionSample` or a bare (image, question, answer) triple.
Sample = tuple[np.ndarray, str, str] | VisionSample


class EncodedRow(NamedTuple):
    """Token ids, labels (prompt masked) and the image's pixel values of one sample."""

    ids: list[int]
    labels: list[int]
    pixels: torch.Tensor


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] grayscale HxW (or HxWx3) float image as HxWx3 uint8, what processors take."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"image must be HxW or HxWx3, got shape {np.shape(image)}")
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def encode_samples(
    processor: LlavaProcessor,
    samples: Sequence[Sample],
    max_length: int,
    eos: bool = True,
) -> list[EncodedRow]:
    """Encode (image, question, answer) triples for training and scoring.

    The prompt is the processor's chat template with one image and the question (image tokens
    expanded by the processor); the answer is tokenised separately with a leading space (+ EOS),
    so training, scoring and generation see the same prompt ids. An answer that does not fit
    `max_length` is cut at the right; a prompt that does not fit is an error (image tokens must
    stay whole). Prompt ids are reused per distinct question: the processor gives every image
    the same number of image tokens (fixed resize).
    """
    tokenizer = processor.tokenizer
    pixels = processor.image_processor([to_rgb_uint8(s[0]) for s in samples], return_tensors="pt")[
        "pixel_values"
    ]
    prompts: dict[str, list[int]] = {}
    rows = []
    for (image, question, answer, *_), pixel in zip(samples, pixels, strict=True):
        if question not in prompts:
            prompts[question] = prompt_ids(processor, image, question)
        prompt = prompts[question]
        if len(prompt) >= max_length:
            raise DataError(f"prompt of {len(prompt)} tokens does not fit max_length {max_length}")
        text = answer if answer.startswith(" ") else f" {answer}"
        response = tokenizer(text, add_special_tokens=False)["input_ids"]
        response = ([*response, tokenizer.eos_token_id] if eos else response)[
            : max_length - len(prompt)
        ]
        rows.append(EncodedRow(prompt + response, [IGNORE] * len(prompt) + response, pixel))
    return rows


def prompt_ids(processor: LlavaProcessor, image: np.ndarray, question: str) -> list[int]:
    """Token ids of the generation prompt for one image and question (image tokens expanded)."""
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoded = processor(images=[to_rgb_uint8(image)], text=[text])
    return list(encoded["input_ids"][0])


def collate_rows(rows: list[EncodedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids/labels/mask plus stacked pixel values for one batch."""
    width = max(len(r.ids) for r in rows)
    return {
        "input_ids": torch.tensor([r.ids + [pad_id] * (width - len(r.ids)) for r in rows]),
        "labels": torch.tensor([r.labels + [IGNORE] * (width - len(r.labels)) for r in rows]),
        "attention_mask": torch.tensor(
            [[1] * len(r.ids) + [0] * (width - len(r.ids)) for r in rows]
        ),
        "pixel_values": torch.stack([r.pixels for r in rows]),
    }
