"""A LLaVA-style vision-language model built from transformers' own classes.

The tiny offline default is a `LlavaForConditionalGeneration`: a small CLIP vision tower trained
from scratch, LLaVA's two-layer projector, and the project's tiny Llama as the language model
(its weights reused, plus one `<image>` token). Everything downstream goes through
`LlavaProcessor` and the processor's chat template, so a real pretrained LLaVA folder given by
path takes the same code path.

Edges fine-tune LoRA on the language model's linear layers (and, with `LM_HEAD`, its output
head). The adapter spec names each target module by its full path under `language_model`, so
the vision tower's own `q_proj`/`k_proj`/`v_proj` are never touched and the spec hash says
exactly what is adapted. The vision tower and projector stay frozen with the pinned base.
"""

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from edgetune.learning import (
    AdaptedModel,
    AdapterSpec,
    BaseModel,
    BaseModelMismatch,
    InvalidConfig,
    attach_adapter,
    base_model_hash,
    ensure_tiny_model,
)
from edgetune.learning.config import AdapterMode
from edgetune.learning.model import (
    _offline,
    base_model_files,
    compute_device,
    default_cache_dir,
    deterministic_torch,
    files_hash,
)

IMAGE_TOKEN = "<image>"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = (*ATTENTION, "gate_proj", "up_proj", "down_proj")
# The language model's output head (top level in LLaVA). A small LM that never saw a token in
# pre-training leaves its head rows (tied to the embeddings) nearly identical: of the tiny LM's
# 512, 333 point the same way (cosine > 0.9), among them "D", "x" and " p". No change to the
# hidden states can then make one of them likelier than the other 332, so every answer that
# needs one ("Diagnosis:", " pneumonia", ...) pays ~5 nats whatever the image shows. LoRA on
# the head (rank-r change of the rows, B still the only exchanged part) separates them.
LM_HEAD = "lm_head"
# Files besides weights/config/tokenizer that change behaviour: image normalisation, the number
# of image tokens per image, and the prompt format.
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}question: {{ c['text'] }}\n{% endif %}{% endfor %}"
    "{% else %}answer: {{ m['content'][0]['text'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}answer:{% endif %}"
)


@dataclass(frozen=True)
class VisionRecipe:
    """The tiny vision tower's shape; with the language model's hash it names the cache folder."""

    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 128
    version: int = 1

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise InvalidConfig(
                f"VisionRecipe.image_size {self.image_size} is not a multiple of "
                f"patch_size {self.patch_size}"
            )

    @property
    def image_tokens(self) -> int:
        """Image positions in the prompt: one per patch (the CLS output is dropped)."""
        return (self.image_size // self.patch_size) ** 2


@dataclass
class VisionBaseModel(BaseModel):
    """A loaded VLM: `tokenizer` is the processor's tokenizer, `processor` does images + prompts."""

    processor: LlavaProcessor


@dataclass
class VisionAdaptedModel(AdaptedModel):
    """`AdaptedModel` (shapes, get/set adapter) plus the processor that encodes images."""

    processor: LlavaProcessor


def ensure_tiny_vlm(
    cache_dir: Path | None = None,
    seed: int = 0,
    recipe: VisionRecipe | None = None,
    language_model_dir: Path | None = None,
) -> Path:
    """Return the cached VLM of a tiny vision tower over `language_model_dir` (default: the
    project's tiny LM), building it on first use."""
    recipe = recipe or VisionRecipe()
    cache_dir = cache_dir or default_cache_dir()
    lm_dir = language_model_dir or ensure_tiny_model(cache_dir)
    key = {"recipe": asdict(recipe), "seed": seed, "lm": base_model_hash(lm_dir).hex()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    dest = cache_dir / f"tiny-vlm-{digest}"
    if not (dest / "config.json").is_file():
        build_tiny_vlm(dest, lm_dir, seed, recipe)
    return dest


def build_tiny_vlm(
    dest: Path | str,
    language_model_dir: Path | str,
    seed: int = 0,
    recipe: VisionRecipe | None = None,
) -> Path:
    """Build a LLaVA over the causal LM in `language_model_dir`: identical bytes on every build.

    The vision tower and projector are freshly initialised from `seed` (see `pretrain_base`
    for their training); the LM's weights are copied and its vocabulary grows by `<image>`,
    whose embedding row is the mean of the others (no random draw, and it is overwritten by
    image features anyway). Written to a temporary sibling and renamed.
    """
    recipe = recipe or VisionRecipe()
    dest = Path(dest)
    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(language_model_dir)
        language_model = AutoModelForCausalLM.from_pretrained(
            language_model_dir, dtype=torch.float32
        )
        text_config = AutoConfig.from_pretrained(language_model_dir)
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})
    text_config.vocab_size = len(tokenizer)
    config = LlavaConfig(
        vision_config=_vision_config(recipe),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=recipe.image_tokens,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    with deterministic_torch(seed):
        model = LlavaForConditionalGeneration(config)
    _copy_language_model(model, language_model)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"height": recipe.image_size, "width": recipe.image_size},
            do_center_crop=False,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        ),
        tokenizer=tokenizer,
        patch_size=recipe.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=TINY_CHAT_TEMPLATE,
    )
    save_vlm(model, processor, dest)
    return dest


def save_vlm(model: LlavaForConditionalGeneration, processor: LlavaProcessor, dest: Path) -> None:
    """Save weights and processor atomically (temporary sibling, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def vlm_files(path: Path) -> list[Path]:
    """The files `vlm_hash` covers (and a published VLM archive holds), sorted by name."""
    files = base_model_files(path) + [path / n for n in PROCESSOR_FILES if (path / n).is_file()]
    return sorted(files, key=lambda f: f.name)


def vlm_hash(path: Path | str) -> bytes:
    """`base_model_hash` extended by the processor files (`PROCESSOR_FILES`) that exist.

    Same framing and order rule, so a folder without processor files hashes exactly as
    `base_model_hash` does.
    """
    return files_hash(vlm_files(Path(path)))


def load_vlm(path: Path | str, expected_hash: bytes | None = None) -> VisionBaseModel:
    """Load a LLaVA folder (the tiny one or a real pretrained one), refusing another hash."""
    path = Path(path)
    actual = vlm_hash(path)
    if expected_hash is not None and actual != expected_hash:
        raise BaseModelMismatch(str(path), expected_hash, actual)
    with _offline():
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        # PIL on every machine: pixel values must not depend on whether torchvision is installed.
        processor = AutoProcessor.from_pretrained(path, backend="pil")
    model.eval()
    tokenizer = processor.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return VisionBaseModel(model, tokenizer, path, actual, processor)


def vlm_adapter_spec(
    model: LlavaForConditionalGeneration,
    rank: int = 8,
    alpha: float = 16.0,
    mode: AdapterMode = "ffa",
    init_seed: int = 0,
    modules: tuple[str, ...] = ATTENTION,
) -> AdapterSpec:
    """LoRA on the language model's `modules` (default q/k/v/o), each named by its path under
    `language_model`; `LM_HEAD` in `modules` also adapts the output head.

    peft matches a listed name as a dotted suffix, so `language_model.layers.0.self_attn.q_proj`
    selects that one module and never the vision tower's attention.
    """
    names = tuple(
        name[name.index("language_model.") :]
        for name, _ in model.named_modules()
        if "language_model." in name and name.rsplit(".", 1)[-1] in modules
    )
    if not names:
        raise InvalidConfig("model has no language_model attention projections to adapt")
    head = (LM_HEAD,) if LM_HEAD in modules else ()
    return AdapterSpec(
        rank=rank, alpha=alpha, target_modules=names + head, mode=mode, init_seed=init_seed
    )


def attach_vlm_adapter(base: VisionBaseModel, spec: AdapterSpec) -> VisionAdaptedModel:
    """`attach_adapter` for a VLM; refuses a spec that reaches outside the language model."""
    adapted = attach_adapter(base, spec)
    # peft treats a target literally named "lm_head" as an embedding layer and then puts the
    # whole (tied) embedding matrix into the adapter state, where the zero-B global would zero
    # it. Once injected, the head is an ordinary LoRA layer: drop the name from the config that
    # peft's state-dict code consults, so the adapter holds only A and B (the spec keeps it).
    config = adapted.model.peft_config["default"]
    config.target_modules = set(config.target_modules) - {LM_HEAD}
    outside = [
        n
        for n, _ in adapted.model.named_parameters()
        if "lora_" in n and "language_model." not in n and f".{LM_HEAD}." not in n
    ]
    if outside:
        raise InvalidConfig(f"AdapterSpec adapts modules outside the language model: {outside[0]}")
    adapted.model.to(compute_device())
    return VisionAdaptedModel(adapted.model, adapted.tokenizer, adapted.spec, base.processor)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters of the vision tower, the projector and the language model (+ head)."""
    counts = {"vision": 0, "projector": 0, "language": 0}
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen or "lora_" in name:
            continue
        seen.add(id(param))
        part = (
            "vision"
            if "vision_tower" in name
            else "projector"
            if "multi_modal_projector" in name
            else "language"
        )
        counts[part] += param.numel()
    return counts


def _vision_config(recipe: VisionRecipe) -> CLIPVisionConfig:
    """A small CLIP vision tower (three input channels, like every pretrained one)."""
    return CLIPVisionConfig(
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        projection_dim=recipe.hidden_size,
    )


def _copy_language_model(model: LlavaForConditionalGeneration, source: torch.nn.Module) -> None:
    """Copy the causal LM's weights into the VLM; extra vocabulary rows get the mean embedding."""
    state = source.model.state_dict()
    embed = state["embed_tokens.weight"]
    target = model.model.language_model.embed_tokens.weight
    extra = target.shape[0] - embed.shape[0]
    state["embed_tokens.weight"] = torch.cat([embed, embed.mean(0, keepdim=True).repeat(extra, 1)])
    model.model.language_model.load_state_dict(state, strict=True)
    if not model.config.tie_word_embeddings:
        head = source.lm_head.weight
        rows = head.mean(0, keepdim=True).repeat(extra, 1)
        model.lm_head.weight.data.copy_(torch.cat([head, rows]))
