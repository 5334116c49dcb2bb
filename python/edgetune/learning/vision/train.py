"""Training and evaluating the VLM: the owner's pre-training stage, an edge's LoRA round,
validation (loss + candidate-scored accuracy) and greedy dialogue generation.

Mirrors `edgetune.learning.train`/`evaluate`: loss on answer tokens only, seeded batches,
deterministic single-threaded kernels, and the exchanged tensors are the adapter's B matrices.
"""

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from edgetune.casestudy.vlm import (
    VisionAdaptedModel,
    VisionSample,
    collate_rows,
    encode_samples,
    load_vlm,
    prompt_ids,
    save_vlm,
    to_rgb_uint8,
    vlm_hash,
)
from edgetune.casestudy.xray import XRay, generate_set
from edgetune.learning import DataError, EvalResult, TrainConfig, TrainResult, batch_order
from edgetune.learning.evaluate import labelled_nll
from edgetune.learning.model import default_cache_dir, deterministic_torch

CAPTION_QUESTION = "describe the image."
Sample = tuple[np.ndarray, str, str] | VisionSample
_ROWS = ("upper", "middle", "lower")
_COLUMNS = ("left", "central", "right")
_ZONES = ("upper", "middle", "lower")


def blob_caption_pairs(n: int, seed: int, size: int = 64) -> list[tuple[np.ndarray, str]]:
    """Generic synthetic image-caption pairs for pre-training: a grey field with one bright or
    dark, large or small, round region in one of nine places, captioned by what is visible.

    No diagnosis appears, so the stage teaches the tower where and how bright, not what disease.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    pairs = []
    for _ in range(n):
        row, col = rng.integers(3), rng.integers(3)
        large, bright = bool(rng.integers(2)), bool(rng.integers(2))
        cy, cx = (row + 0.5 + rng.uniform(-0.2, 0.2)) / 3, (col + 0.5 + rng.uniform(-0.2, 0.2)) / 3
        radius = (0.14 if large else 0.07) * rng.uniform(0.8, 1.2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image = 0.5 + (0.4 if bright else -0.4) * blob + rng.normal(0, 0.05, (size, size))
        caption = (
            f"a {'large' if large else 'small'} {'bright' if bright else 'dark'} region "
            f"in the {_ROWS[row]} {_COLUMNS[col]} part"
        )
        pairs.append((np.clip(image, 0, 1).astype(np.float32), caption))
    return pairs


def xray_caption_pairs(n: int, seed: int, size: int = 64) -> list[tuple[np.ndarray, str]]:
    """Generic captions of procedural radiographs, read off the generator's masks: heart width,
    and the largest region that differs from aerated lung (brighter or darker, small or large,
    which side, which zone) or "clear lungs".

    Only what is visible is named, never a diagnosis: this is still the owner's generic stage,
    but on the imaging domain, so the tower learns to report the signs the task turns on.
    """
    return [(x.image, _describe(x)) for x in generate_set(n, seed, size)]


def _describe(xray: XRay) -> str:
    """One caption from `xray.masks` and its pixels (see `xray_caption_pairs`)."""
    masks = xray.masks
    heart = "wide" if xray.ctr > 0.5 else "narrow"
    lesion = masks.lesion
    if lesion.sum() < 8:
        return f"{heart} heart, clear lungs."
    lungs = masks.right_lung | masks.left_lung
    rows = np.flatnonzero(lungs.any(axis=1))
    depth = (np.nonzero(lesion)[0].mean() - rows[0]) / max(rows[-1] - rows[0], 1)
    zone = _ZONES[min(int(depth * 3), 2)]
    side = "right" if np.nonzero(lesion)[1].mean() < lesion.shape[1] / 2 else "left"
    contrast = xray.image[lesion].mean() - xray.image[lungs & ~lesion].mean()
    shade = "bright" if contrast > 0 else "dark"
    extent = "large" if lesion.sum() > 0.15 * lungs.sum() else "small"
    return f"{heart} heart, {extent} {shade} area in the {side} {zone} zone."


def pretrain_base(
    vlm_dir: Path | str,
    image_caption_pairs: Sequence[tuple[np.ndarray, str]],
    steps: int,
    seed: int = 0,
    cache_dir: Path | None = None,
    batch_size: int = 16,
    lr: float = 2e-3,
    tune_steps: int = 0,
    tune_lr: float = 1e-3,
) -> Path:
    """The owner's pre-training on image captions, in LLaVA's two stages: `steps` steps of the
    vision tower and projector with the language model frozen (alignment), then `tune_steps`
    steps of everything, the language model included.

    The second stage is there because the tiny LM cannot learn to caption frozen: it never saw
    these words and its head rows for them coincide (see `vlm.LM_HEAD`); after 600 alignment
    steps its greedy captions were still unrelated text. `bench/bench_vlm_xray.py` (one
    300-case hospital, 150 LoRA steps) measures 0.63 test accuracy on the base aligned for
    1200 steps and 0.71 once it is also tuned for 1200. Alignment must come first: on the quick
    run's pooled hospital data, a base trained end to end from the start (1200 steps) reaches
    0.25, 600 + 600 staged steps 0.53, 1200 + 1200 (the case study's) 0.72.

    Done once: the result is cached in `cache_dir/vlm-pre-<key>`, the key hashing the input
    model's `vlm_hash`, every pair and every knob, and it is an ordinary saved model folder
    whose `vlm_hash` the task pins as its base model.
    """
    if not image_caption_pairs or steps < 1 or tune_steps < 0:
        raise DataError("pretrain_base needs an image-caption pair, one step, tune_steps >= 0")
    knobs = {
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "tune_steps": tune_steps,
        "tune_lr": tune_lr,
        "version": 2,
    }
    key = _pretrain_key(vlm_hash(vlm_dir), image_caption_pairs, knobs)
    dest = (cache_dir or default_cache_dir()) / f"vlm-pre-{key[:12]}"
    if (dest / "config.json").is_file():
        return dest
    base = load_vlm(vlm_dir)
    model = base.model
    samples = [(image, CAPTION_QUESTION, caption) for image, caption in image_caption_pairs]
    rows = encode_samples(
        base.processor, samples, max_length=model.config.text_config.max_position_embeddings
    )
    connector = [model.model.vision_tower, model.model.multi_modal_projector]
    stages = [(connector, steps, lr), ([model], tune_steps, tune_lr)]
    for modules, stage_steps, stage_lr in stages:
        if stage_steps:
            config = TrainConfig(steps=stage_steps, batch_size=batch_size, lr=stage_lr, seed=seed)
            _fit(model, rows, base.tokenizer.pad_token_id, _only_trainable(model, modules), config)
    save_vlm(model, base.processor, dest)
    return dest


def _only_trainable(
    model: torch.nn.Module, modules: list[torch.nn.Module]
) -> list[torch.nn.Parameter]:
    """Freeze `model` but `modules`; return their parameters."""
    model.requires_grad_(False)
    for module in modules:
        module.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def train_vlm_update(
    adapted: VisionAdaptedModel,
    global_adapter: Mapping[str, torch.Tensor],
    samples: Sequence[Sample],
    config: TrainConfig,
    sample_weights: Sequence[float] | None = None,
) -> TrainResult:
    """One edge's round from `global_adapter` on (image, question, answer) samples, drawn in
    proportion to `sample_weights` if given (see `batch_order`).

    Returns the exchanged tensors (B only in "ffa"); same inputs on the same CPU, same update.
    """
    if not samples:
        raise DataError("train_vlm_update needs at least one sample")
    adapted.set_adapter(global_adapter)
    rows = encode_samples(adapted.processor, list(samples), config.max_length)
    params = [p for p in adapted.model.parameters() if p.requires_grad]
    start = time.perf_counter()
    losses = _fit(
        adapted.model, rows, adapted.tokenizer.pad_token_id, params, config, sample_weights
    )
    wall = time.perf_counter() - start
    return TrainResult(adapted.get_adapter(trained_only=True), len(samples), wall, losses)


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
    the prompt among all candidates: one forward pass per candidate, deterministic, and never
    an unparseable answer. Without candidates or labels, accuracy is None.
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
    names = sorted(candidates)
    queries = [(s.image, s.question, candidates[name]) for s in labelled for name in names]
    scores = answer_nll(
        adapted, encode_samples(adapted.processor, queries, max_length, eos=False), batch_size
    )
    hits = 0
    for i, sample in enumerate(labelled):
        row = [score for score, _ in scores[i * len(names) : (i + 1) * len(names)]]
        hits += names[int(np.argmin(row))] == sample.label
    return EvalResult(loss=loss, accuracy=hits / len(labelled), n_examples=len(samples))


@torch.no_grad()
def generate_answer(
    adapted: VisionAdaptedModel, image: np.ndarray, question: str, max_new_tokens: int = 48
) -> str:
    """Greedy answer to `question` about `image` with the adapter currently loaded."""
    ids = prompt_ids(adapted.processor, image, question)
    pixels = adapted.processor.image_processor([to_rgb_uint8(image)], return_tensors="pt")
    adapted.model.eval()
    with deterministic_torch(0):
        out = adapted.model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            pixel_values=pixels["pixel_values"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=adapted.tokenizer.pad_token_id,
        )
    return adapted.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()


def _fit(
    model: torch.nn.Module,
    rows: list,
    pad_id: int,
    params: list[torch.nn.Parameter],
    config: TrainConfig,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """Seeded AdamW over `params` for `config.steps` batches; returns the per-step losses."""
    losses = []
    with deterministic_torch(config.seed, threads=config.threads):
        generator = torch.Generator().manual_seed(config.seed)
        order = batch_order(len(rows), config, generator, weights)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        model.train()
        for batch_ids in order:
            loss = model(**collate_rows([rows[i] for i in batch_ids], pad_id)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
    return losses


@torch.no_grad()
def answer_nll(adapted: VisionAdaptedModel, rows: list, batch_size: int) -> list[tuple[float, int]]:
    """Summed answer NLL (float64 log-softmax) and answer token count of each row."""
    out = []
    adapted.model.eval()
    with deterministic_torch(0):
        for start in range(0, len(rows), batch_size):
            batch = collate_rows(rows[start : start + batch_size], adapted.tokenizer.pad_token_id)
            labels = batch.pop("labels")
            out += labelled_nll(adapted.model(**batch).logits, labels)
    return out


def _pretrain_key(
    model_hash: bytes, pairs: Sequence[tuple[np.ndarray, str]], knobs: dict[str, object]
) -> str:
    """Hex sha256 naming a pre-training run: base hash, knobs, each pair's shape/pixels/caption."""
    digest = hashlib.sha256(model_hash + json.dumps(knobs, sort_keys=True).encode())
    for image, caption in pairs:
        array = np.ascontiguousarray(image, dtype="<f4")
        for part in (str(array.shape).encode(), array.tobytes(), caption.encode()):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()
