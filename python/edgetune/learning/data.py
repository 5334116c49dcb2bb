"""Prompt/response data: the procedural triage demo set, non-IID sharding, and JSONL loading.

Prompts end without a trailing space and responses start with one (" flu"): a prompt ending in
"Triage: " would tokenise differently from how "Triage: flu" was seen in training.
"""

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.learning.errors import DataError


@dataclass(frozen=True, slots=True)  # slots: a large data file holds millions of these
class Example:
    """One supervised pair; `label` is set when the response is one of a fixed set of classes."""

    prompt: str
    response: str
    label: str | None = None


TRIAGE_CLASSES: dict[str, tuple[str, ...]] = {
    "flu": ("a fever", "a cough", "chills", "aching muscles", "a runny nose", "a sore throat"),
    "migraine": (
        "a throbbing headache",
        "blurred vision",
        "nausea",
        "pain behind my eyes",
        "sensitivity to light",
        "a pounding head",
    ),
    "food poisoning": (
        "stomach cramps",
        "vomiting",
        "diarrhea",
        "an upset stomach",
        "nausea after eating",
        "a bloated belly",
    ),
    "sprain": (
        "a swollen ankle",
        "a twisted knee",
        "pain when walking",
        "a bruised wrist",
        "a stiff joint",
        "a sore ankle",
    ),
    "allergy": ("itchy eyes", "sneezing", "a rash", "hives", "watery eyes", "an itchy throat"),
}
TRIAGE_LABELS: tuple[str, ...] = tuple(TRIAGE_CLASSES)
_PHRASINGS = (
    "i have {a} and {b}",
    "since yesterday i have had {a} and {b}",
    "my problem is {a}, also {b}",
    "doctor, i suffer from {a} and {b}",
    "for two days i have had {a} with {b}",
    "{a} and {b} started this morning",
)


def triage_prompt(complaint: str) -> str:
    """The prompt format the demo uses (no trailing space, see module docstring)."""
    return f"patient: {complaint}.\ntriage:"


def triage_examples(n: int, seed: int, labels: Sequence[str] | None = None) -> list[Example]:
    """`n` symptom → triage pairs; label i of `labels` cycles so classes are balanced."""
    rng = random.Random(seed)
    labels = list(labels or TRIAGE_LABELS)
    examples = []
    for i in range(n):
        label = labels[i % len(labels)]
        a, b = rng.sample(TRIAGE_CLASSES[label], 2)
        complaint = rng.choice(_PHRASINGS).format(a=a, b=b)
        examples.append(Example(triage_prompt(complaint), f" {label}", label))
    rng.shuffle(examples)
    return examples


def triage_splits(
    n_train: int, n_val_per_class: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """Training pool and a balanced held-out validation split (different seeds, so no reuse)."""
    val = triage_examples(n_val_per_class * len(TRIAGE_LABELS), seed=seed * 2 + 1)
    train = triage_examples(n_train, seed=seed * 2)
    return train, val


def shard_non_iid(
    examples: Sequence[Example], n_edges: int, alpha: float, seed: int, min_size: int = 1
) -> list[list[Example]]:
    """Split labelled examples across edges with Dirichlet(alpha) class proportions.

    Small alpha gives skewed label mixes and unequal sizes (non-IID); large alpha nears IID.
    Redraws (seeded) until every edge has at least `min_size` examples.
    """
    if n_edges < 1 or alpha <= 0:
        raise DataError(f"shard_non_iid needs n_edges >= 1 and alpha > 0, got {n_edges}, {alpha}")
    if len(examples) < n_edges * min_size:
        raise DataError(f"{len(examples)} examples cannot give {n_edges} edges {min_size} each")
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label or "", []).append(example)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        shards: list[list[Example]] = [[] for _ in range(n_edges)]
        for label in sorted(by_label):
            group = by_label[label]
            cuts = (np.cumsum(rng.dirichlet([alpha] * n_edges)) * len(group)).astype(int)[:-1]
            for edge, part in enumerate(np.split(np.arange(len(group)), cuts)):
                shards[edge] += [group[i] for i in part]
        if min(len(s) for s in shards) >= min_size:
            return shards
    raise DataError(
        f"could not shard {len(examples)} examples into {n_edges} edges of >= {min_size}"
    )


def load_jsonl(path: Path | str) -> list[Example]:
    """Read `{"prompt": ..., "response": ..., "label"?: ...}` lines (an edge's private data).

    Streams line by line, so memory holds the examples, not the file's text as well (a 2 GB
    file read whole peaked at 4.65 GB RSS); a bad line is named by file:line."""
    path = Path(path)
    examples = []
    try:
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if example := _parse_line(path, number, raw):
                    examples.append(example)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


def _parse_line(path: Path, number: int, raw: bytes) -> Example | None:
    """The example on one line, None for a blank line; DataError naming path:line otherwise."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{number}: not UTF-8 (byte {exc.start + 1} of the line)") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
        label = row.get("label")
        # A few distinct labels repeat on every line: one string each, not one per line.
        example = Example(
            row["prompt"], row["response"], sys.intern(label) if isinstance(label, str) else label
        )
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}:{number}: not a prompt/response object ({exc})") from None
    if not all(isinstance(v, str) for v in (example.prompt, example.response)) or not (
        example.response
    ):
        raise DataError(f"{path}:{number}: prompt and response must be strings, response non-empty")
    return example


def save_jsonl(examples: Sequence[Example], path: Path | str) -> None:
    """Write examples in the format `load_jsonl` reads (for demos and tests)."""
    rows = [
        {"prompt": e.prompt, "response": e.response, **({"label": e.label} if e.label else {})}
        for e in examples
    ]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
