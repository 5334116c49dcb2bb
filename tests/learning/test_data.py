from collections import Counter
from pathlib import Path

import pytest

from edgetune.learning import (
    TRIAGE_LABELS,
    DataError,
    load_jsonl,
    save_jsonl,
    shard_non_iid,
    triage_examples,
    triage_splits,
)


def test_triage_examples_are_seeded_balanced_and_well_formed() -> None:
    examples = triage_examples(50, seed=3)
    assert examples == triage_examples(50, seed=3) != triage_examples(50, seed=4)
    assert Counter(e.label for e in examples) == dict.fromkeys(TRIAGE_LABELS, 10)
    for e in examples:
        assert not e.prompt.endswith(" ") and e.response == f" {e.label}"
    assert len({e.prompt for e in examples}) > 40


def test_validation_split_is_balanced_and_disjoint_from_training() -> None:
    train, val = triage_splits(200, 8, seed=0)
    assert Counter(e.label for e in val) == dict.fromkeys(TRIAGE_LABELS, 8)
    assert len(train) == 200
    assert len({e.prompt for e in val} & {e.prompt for e in train}) < len(val) // 2


def test_dirichlet_shards_partition_the_pool_and_are_skewed() -> None:
    train = triage_examples(300, seed=1)
    shards = shard_non_iid(train, 3, alpha=0.3, seed=0, min_size=10)
    assert sorted(id(e) for s in shards for e in s) == sorted(map(id, train))
    assert all(len(s) >= 10 for s in shards) and len({len(s) for s in shards}) == 3
    top_share = [Counter(e.label for e in s).most_common(1)[0][1] / len(s) for s in shards]
    assert max(top_share) > 0.35  # a balanced shard would have ~0.2
    assert shards == shard_non_iid(train, 3, alpha=0.3, seed=0, min_size=10)
    with pytest.raises(DataError, match="alpha"):
        shard_non_iid(train, 3, alpha=0, seed=0)


def test_jsonl_round_trip_and_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    examples = triage_examples(7, seed=0)
    save_jsonl(examples, path)
    assert load_jsonl(path) == examples
    path.write_text('{"prompt": "a", "response": " b"}\n\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:3"):
        load_jsonl(path)
    path.write_text("")
    with pytest.raises(DataError, match="no examples"):
        load_jsonl(path)
    with pytest.raises(DataError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")
