import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune.learning import (
    BaseModelMismatch,
    BaseModelUnavailable,
    base_model_hash,
    build_tiny_model,
    load_base_model,
    prepare_smollm2,
)


def test_tiny_model_builds_bit_identically(tiny_path: Path, tmp_path: Path) -> None:
    # A second build in a separate process (fresh RNG and thread state) gives the same bytes.
    code = (
        "import sys; from edgetune.learning import build_tiny_model; build_tiny_model(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], check=True)
    names = sorted(p.name for p in tiny_path.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (tiny_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert base_model_hash(tiny_path) == base_model_hash(tmp_path / "again")


def test_tiny_model_is_small_and_in_cache(tiny_path: Path) -> None:
    assert tiny_path.name.startswith("tiny-")
    assert (tiny_path / "model.safetensors").is_file() and (tiny_path / "tokenizer.json").is_file()
    base = load_base_model(tiny_path)
    assert 100_000 <= sum(p.numel() for p in base.model.parameters()) <= 1_000_000


def test_hash_covers_weights_and_tokenizer_but_not_generation_config(
    tiny_path: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_path, tmp_path / "copy"))
    original = base_model_hash(copy)
    (copy / "generation_config.json").write_text("{}")
    assert base_model_hash(copy) == original
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        data = bytearray((copy / name).read_bytes())
        data[-2] ^= 1
        (copy / name).write_bytes(bytes(data))
        assert base_model_hash(copy) != original, name
        data[-2] ^= 1
        (copy / name).write_bytes(bytes(data))
    assert base_model_hash(copy) == original


def test_load_refuses_a_base_with_another_hash(tiny_path: Path) -> None:
    pinned = bytes(32)
    with pytest.raises(BaseModelMismatch) as info:
        load_base_model(tiny_path, expected_hash=pinned)
    message = str(info.value)
    assert "\n" not in message and pinned.hex() in message
    assert base_model_hash(tiny_path).hex() in message
    assert load_base_model(tiny_path, expected_hash=base_model_hash(tiny_path)).path == tiny_path


def test_hash_of_a_folder_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BaseModelUnavailable, match="not a saved model folder"):
        base_model_hash(tmp_path)


def test_build_into_existing_dest_replaces_it(tmp_path: Path) -> None:
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "stale.txt").write_text("x")
    assert build_tiny_model(dest) == dest
    assert not (dest / "stale.txt").exists() and (dest / "config.json").is_file()


@pytest.mark.slow
def test_smollm2_converts_and_reloads(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    try:
        path = prepare_smollm2(tmp_path)
    except BaseModelUnavailable as exc:
        pytest.skip(str(exc))
    base = load_base_model(path, expected_hash=base_model_hash(path))
    assert 130e6 < sum(p.numel() for p in base.model.parameters()) < 140e6
    assert prepare_smollm2(tmp_path) == path
