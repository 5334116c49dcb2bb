"""The LLaVA-style VLM: deterministic build, hashing, pre-training, LM-only LoRA, train/eval.

Images are made inline (a grey field with a bright spot on the left or right) so these tests do
not depend on the X-ray generator.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgetune.learning import (
    BaseModelMismatch,
    TrainConfig,
    adapter_from_bytes,
    adapter_to_bytes,
    base_model_hash,
    ensure_tiny_model,
    initial_global_adapter,
)
from edgetune.learning.vision.encode import VisionSample, collate_rows, encode_samples
from edgetune.learning.vision.evaluate import answer_nll, candidate_nll, evaluate_vlm
from edgetune.learning.vision.model import (
    ALL_LINEAR,
    LM_HEAD,
    attach_vlm_adapter,
    build_tiny_vlm,
    ensure_tiny_vlm,
    load_vlm,
    vlm_adapter_spec,
    vlm_hash,
)
from edgetune.learning.vision.train import (
    blob_caption_pairs,
    generate_answer,
    pretrain_base,
    train_vlm_update,
)

QUESTION = "where is the bright spot?"
CANDIDATES = {"left": "the spot is on the left", "right": "the spot is on the right"}


def spot_samples(n: int, seed: int) -> list[VisionSample]:
    """Balanced two-class task: the answer names the side of a bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    samples = []
    for i in range(n):
        side = ("left", "right")[i % 2]
        cx = 16 if side == "left" else 48
        image = rng.uniform(0.2, 0.4, (64, 64)) + 0.5 * np.exp(
            -((yy - 32) ** 2 + (xx - cx) ** 2) / 50
        )
        samples.append(
            VisionSample(np.clip(image, 0, 1).astype(np.float32), QUESTION, CANDIDATES[side], side)
        )
    return samples


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def vlm_path(cache: Path) -> Path:
    return ensure_tiny_vlm(cache)


@pytest.fixture(scope="module")
def pairs() -> list:
    return blob_caption_pairs(200, seed=0)


@pytest.fixture(scope="module")
def pretrained(vlm_path: Path, cache: Path, pairs: list) -> Path:
    # LM-only LoRA reads the image through a frozen tower: without this stage the toy task
    # stays at chance (measured: 0.5 after 60 steps), with ~120 steps it is solved.
    return pretrain_base(
        vlm_path, pairs, steps=120, seed=0, cache_dir=cache, batch_size=8, tune_steps=60
    )


@pytest.fixture
def adapted(pretrained: Path):
    base = load_vlm(pretrained)
    return attach_vlm_adapter(base, vlm_adapter_spec(base.model))


def test_tiny_vlm_builds_bit_identically(vlm_path: Path, cache: Path, tmp_path: Path) -> None:
    # A second build in a fresh process (new RNG and thread state) gives the same bytes.
    lm_dir = ensure_tiny_model(cache)
    code = (
        "import sys; from edgetune.learning.vision.model import build_tiny_vlm as b; "
        "b(*sys.argv[1:])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "again"), str(lm_dir)], check=True)
    names = sorted(p.name for p in vlm_path.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (vlm_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert vlm_hash(vlm_path) == vlm_hash(tmp_path / "again")
    # A different seed gives a different vision tower, hence a different pinned hash.
    other = build_tiny_vlm(tmp_path / "seed1", lm_dir, seed=1)
    assert vlm_hash(other) != vlm_hash(vlm_path)


def test_language_model_weights_are_the_tiny_lm(vlm_path: Path, cache: Path) -> None:
    lm = load_file(ensure_tiny_model(cache) / "model.safetensors")
    vlm = load_file(vlm_path / "model.safetensors")
    # Saved in the classic LLaVA checkpoint layout (`language_model.model.*`).
    embed = vlm["language_model.model.embed_tokens.weight"]
    assert embed.shape[0] == lm["model.embed_tokens.weight"].shape[0] + 1  # + <image>
    assert torch.equal(embed[:-1], lm["model.embed_tokens.weight"])
    key = "layers.0.self_attn.q_proj.weight"
    assert torch.equal(vlm[f"language_model.model.{key}"], lm[f"model.{key}"])


def test_hash_covers_processor_files_and_load_checks_it(vlm_path: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(vlm_path, tmp_path / "copy"))
    original = vlm_hash(copy)
    assert original != base_model_hash(copy)  # the processor files are part of the pin
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
    ):
        data = bytearray((copy / name).read_bytes())
        data[-2] ^= 1
        (copy / name).write_bytes(bytes(data))
        assert vlm_hash(copy) != original, name
        data[-2] ^= 1
        (copy / name).write_bytes(bytes(data))
    (copy / "generation_config.json").write_text("{}")
    assert vlm_hash(copy) == original
    with pytest.raises(BaseModelMismatch):
        load_vlm(copy, expected_hash=bytes(32))


def test_forward_with_an_image_gives_finite_loss_that_depends_on_the_image(adapted) -> None:
    left, right = spot_samples(2, seed=0)
    rows = encode_samples(adapted.processor, [left, right], max_length=256)
    image_token = adapted.model.config.image_token_index
    assert [r.ids.count(image_token) for r in rows] == [64, 64]
    with torch.no_grad():
        out = adapted.model(**collate_rows(rows, adapted.tokenizer.pad_token_id))
    assert torch.isfinite(out.loss)
    assert not torch.allclose(out.logits[0, -3], out.logits[1, -3])


def test_lora_trains_only_language_model_b_and_bytes_are_canonical(adapted) -> None:
    trainable = [n for n, p in adapted.model.named_parameters() if p.requires_grad]
    assert len(trainable) == 8  # 2 layers x q/k/v/o
    assert all(".language_model." in n and "lora_B" in n for n in trainable)
    assert not any(
        "vision_tower" in n or "projector" in n
        for n, _ in adapted.model.named_parameters()
        if "lora_" in n
    )
    global0 = initial_global_adapter(adapted)
    config = TrainConfig(steps=2, batch_size=4, seed=3)
    first = train_vlm_update(adapted, global0, spot_samples(8, seed=1), config)
    again = train_vlm_update(adapted, global0, spot_samples(8, seed=1), config)
    data = adapter_to_bytes(first.tensors)
    assert data == adapter_to_bytes(again.tensors)  # seeded: same update, same bytes
    parsed = adapter_from_bytes(data, adapted.shapes(trained_only=True))
    assert adapter_to_bytes(parsed) == data
    assert any(t.abs().sum() > 0 for t in parsed.values())


def test_training_on_a_toy_image_task_improves_eval(adapted) -> None:
    global0 = initial_global_adapter(adapted)
    validation = spot_samples(16, seed=2)
    before = evaluate_vlm(adapted, validation, global0, CANDIDATES)
    result = train_vlm_update(
        adapted, global0, spot_samples(48, seed=1), TrainConfig(steps=60, batch_size=8)
    )
    after = evaluate_vlm(adapted, validation, {**global0, **result.tensors}, CANDIDATES)
    assert after.loss < before.loss - 1.0
    assert after.accuracy is not None and after.accuracy >= 0.9
    assert evaluate_vlm(adapted, validation).accuracy is None  # no candidates, no accuracy


def test_cached_prompt_candidate_nll_equals_a_full_pass_per_candidate(adapted) -> None:
    global0 = initial_global_adapter(adapted)
    trained = train_vlm_update(
        adapted, global0, spot_samples(16, seed=1), TrainConfig(steps=5, batch_size=8)
    )
    adapted.set_adapter({**global0, **trained.tensors})
    # Two questions (two prompt lengths), answers of unequal length, batches that split a group.
    samples = spot_samples(7, seed=3)
    samples[1::2] = [
        s._replace(question="which side is brighter, left or right?") for s in samples[1::2]
    ]
    answers = ["the spot is on the left", "right", "it is hard to say where the spot is"]
    cached = candidate_nll(adapted, samples, answers, batch_size=2, max_length=256)
    rows = encode_samples(
        adapted.processor, [(s.image, s.question, a) for s in samples for a in answers], 256, False
    )
    full = [score for score, _ in answer_nll(adapted, rows, batch_size=4)]
    assert np.allclose(np.ravel(cached), full, rtol=1e-5, atol=1e-4)
    assert len({round(x, 3) for x in full}) > len(answers)  # not one constant


def test_generate_returns_text(adapted) -> None:
    sample = spot_samples(1, seed=4)[0]
    answer = generate_answer(adapted, sample.image, sample.question, max_new_tokens=5)
    assert isinstance(answer, str) and answer


def test_pretraining_stages_train_what_they_name_and_are_cached(
    vlm_path: Path, cache: Path
) -> None:
    pairs, held_out = blob_caption_pairs(32, seed=0), blob_caption_pairs(16, seed=1)
    before = load_file(vlm_path / "model.safetensors")
    samples = [VisionSample(i, "describe the image.", c) for i, c in held_out]
    outs = {}
    for tune_steps in (0, 5):
        out = pretrain_base(
            vlm_path, pairs, 15, cache_dir=cache, batch_size=8, tune_steps=tune_steps
        )
        after = load_file(out / "model.safetensors")
        changed = (k for k in before if not torch.equal(before[k], after[k]))
        outs[tune_steps] = {k.split(".")[0] for k in changed}
        losses = [evaluate_vlm(_bare(path), samples).loss for path in (vlm_path, out)]
        assert losses[1] < losses[0]
    # Alignment trains the tower and projector only; tuning then trains the LM too.
    assert outs[0] == {"vision_tower", "multi_modal_projector"}
    assert outs[5] == {"vision_tower", "multi_modal_projector", "language_model"}
    out = pretrain_base(vlm_path, pairs, steps=15, cache_dir=cache, batch_size=8)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert pretrain_base(vlm_path, pairs, steps=15, cache_dir=cache, batch_size=8) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime  # cached, not retrained
    assert pretrain_base(vlm_path, pairs, steps=16, cache_dir=cache, batch_size=8) != out


def _bare(path: Path):
    """The base without LoRA, for scoring (attach with a rank-1 adapter left at B = 0)."""
    base = load_vlm(path)
    return attach_vlm_adapter(base, vlm_adapter_spec(base.model, rank=1))


def test_head_lora_adapts_only_a_and_b_and_starts_as_the_base(pretrained: Path) -> None:
    # The tiny LM's head rows for tokens it never saw coincide, so "D", "x", " p" can only be
    # emitted with a head adapter; peft must not carry the tied embedding in the adapter.
    base = load_vlm(pretrained)
    rows = encode_samples(base.processor, spot_samples(2, seed=0), max_length=256)
    batch = collate_rows(rows, base.tokenizer.pad_token_id)
    with torch.no_grad():
        reference = base.model(**batch).logits.clone()
    adapted = attach_vlm_adapter(base, vlm_adapter_spec(base.model, modules=(*ALL_LINEAR, LM_HEAD)))
    global0 = initial_global_adapter(adapted)
    assert all(".lora_A." in k or ".lora_B." in k for k in global0)
    assert any(k.startswith(f"base_model.model.{LM_HEAD}.lora_B") for k in global0)
    adapted.set_adapter(global0)
    with torch.no_grad():
        assert torch.equal(adapted.model(**batch).logits, reference)
    result = train_vlm_update(
        adapted, global0, spot_samples(8, seed=1), TrainConfig(steps=2, batch_size=4)
    )
    assert result.tensors[f"base_model.model.{LM_HEAD}.lora_B.weight"].abs().sum() > 0
