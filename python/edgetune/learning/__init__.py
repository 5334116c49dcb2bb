"""Federated LoRA fine-tuning of a pinned causal LM: model, adapter, train, aggregate, evaluate.

Typical edge flow:
    base = load_base_model(path, expected_hash=task.base_model_hash)
    adapted = attach_adapter(base, spec)
    global0 = adapter_from_bytes(published_bytes, adapted.shapes())
    result = train_update(adapted, global0, my_examples, TrainConfig())
    update_bytes = adapter_to_bytes(result.tensors)
    others = adapter_from_bytes(fetched, adapted.shapes(trained_only=True))
    new_global = aggregate(global0, updates_in_reveal_order)
    metric = evaluate(adapted, my_validation, new_global).metric

`edgetune.learning.vision` is the same for a LLaVA-style vision-language model, on the same
training loop (`train.fit`) and candidate scorer (`evaluate.CandidateScoring`).
"""

from edgetune.learning.adapter import (
    AdaptedModel,
    adapter_from_bytes,
    adapter_to_bytes,
    attach_adapter,
    initial_global_adapter,
    trained_keys,
)
from edgetune.learning.aggregate import (
    aggregate,
    aggregate_in_reveal_order,
    coalition_adapter,
    fedit_product_error,
    momentum_aggregate,
    update_delta,
)
from edgetune.learning.config import AdapterSpec, TrainConfig
from edgetune.learning.data import (
    TRIAGE_LABELS,
    Example,
    load_jsonl,
    save_jsonl,
    shard_non_iid,
    triage_examples,
    triage_splits,
)
from edgetune.learning.errors import (
    BaseModelMismatch,
    BaseModelUnavailable,
    DataError,
    InvalidConfig,
    LearningError,
    MalformedAdapter,
)
from edgetune.learning.evaluate import EvalResult, evaluate
from edgetune.learning.model import (
    BaseModel,
    TinyRecipe,
    base_model_hash,
    build_tiny_model,
    ensure_tiny_model,
    load_base_model,
    prepare_smollm2,
    resolve_base_model,
)
from edgetune.learning.train import (
    TrainResult,
    batch_order,
    class_balanced_weights,
    train_update,
)

__all__ = [
    "TRIAGE_LABELS",
    "AdaptedModel",
    "AdapterSpec",
    "BaseModel",
    "BaseModelMismatch",
    "BaseModelUnavailable",
    "DataError",
    "EvalResult",
    "Example",
    "InvalidConfig",
    "LearningError",
    "MalformedAdapter",
    "TinyRecipe",
    "TrainConfig",
    "TrainResult",
    "adapter_from_bytes",
    "adapter_to_bytes",
    "aggregate",
    "aggregate_in_reveal_order",
    "attach_adapter",
    "base_model_hash",
    "batch_order",
    "build_tiny_model",
    "class_balanced_weights",
    "coalition_adapter",
    "ensure_tiny_model",
    "evaluate",
    "fedit_product_error",
    "initial_global_adapter",
    "load_base_model",
    "load_jsonl",
    "momentum_aggregate",
    "prepare_smollm2",
    "resolve_base_model",
    "save_jsonl",
    "shard_non_iid",
    "train_update",
    "trained_keys",
    "triage_examples",
    "triage_splits",
    "update_delta",
]
