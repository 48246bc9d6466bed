"""Packaged GGUFs: assembled once from their installed parts, and refused unless the file has
the model's exact size and sha256."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from context_kit_service.local_models.packaged import (
    PACKAGED_MODELS,
    PackagedModel,
    packaged_gguf,
)
from context_kit_service.provider_errors import ProviderError
from context_kit_service.settings import Settings
from tests.conftest import SHARED_MODELS

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3]


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A model in three installed parts (packages on sys.path), like the real ones."""
    site = tmp_path / "site"
    for number, data in enumerate(PARTS, start=1):
        package = site / f"cks_fake_part{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{number:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(PARTS)
    return PackagedModel(
        name="fake",
        file_name="fake.gguf",
        parts=tuple((f"cks_fake_part{n}", f"data/part{n:02d}.bin") for n in (1, 2, 3)),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="make install",
    )


def test_the_parts_are_assembled_in_order_once(fake_model: PackagedModel, tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = packaged_gguf(fake_model, models)
    assert path == models / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    written = path.stat().st_mtime_ns
    assert packaged_gguf(fake_model, models) == path
    assert path.stat().st_mtime_ns == written
    assert sorted(p.name for p in models.iterdir()) == ["fake.gguf"]  # no staging file left


def test_a_file_of_the_wrong_size_is_refused_with_the_fix(
    fake_model: PackagedModel, tmp_path: Path
) -> None:
    path = packaged_gguf(fake_model, tmp_path / "models")
    path.write_bytes(b"".join(PARTS)[:-1])
    with pytest.raises(ProviderError) as refused:
        packaged_gguf(fake_model, tmp_path / "models")
    assert (refused.value.code, refused.value.status) == ("MODEL_CORRUPT", 503)
    assert refused.value.message == (
        f"the assembled model {path} is not fake: its size is 1,783 bytes, not 1,784. Delete "
        "the file; it is assembled again from the installed parts on the next start"
    )


def test_a_file_of_the_right_size_and_wrong_hash_is_refused(
    fake_model: PackagedModel, tmp_path: Path
) -> None:
    path = packaged_gguf(fake_model, tmp_path / "models")
    tampered = bytearray(path.read_bytes())
    tampered[500] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(ProviderError) as refused:
        packaged_gguf(fake_model, tmp_path / "models")
    actual = hashlib.sha256(bytes(tampered)).hexdigest()
    assert refused.value.code == "MODEL_CORRUPT"
    assert f"its sha256 is {actual}, not {fake_model.sha256}" in refused.value.message
    path.unlink()  # the fix the message names
    assert packaged_gguf(fake_model, tmp_path / "models").read_bytes() == b"".join(PARTS)


def test_a_missing_part_names_the_install_command(
    fake_model: PackagedModel, tmp_path: Path
) -> None:
    missing = PackagedModel(**{**fake_model.__dict__, "parts": (("cks_no_such_part", "x.bin"),)})
    with pytest.raises(ProviderError) as refused:
        packaged_gguf(missing, tmp_path / "models")
    assert (refused.value.code, refused.value.message) == (
        "MODEL_NOT_FOUND",
        "the packaged model fake is not installed (part cks_no_such_part is missing); "
        "run `make install`",
    )
    assert not (tmp_path / "models" / "fake.gguf").exists()


def test_the_packaged_qwen_assembles_to_its_published_hash() -> None:
    qwen = PACKAGED_MODELS["qwen2.5-coder-0.5b"]
    path = packaged_gguf(qwen, SHARED_MODELS)
    assert path.stat().st_size == 491_400_064
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_the_models_folder_defaults_to_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, models_dir=None)  # type: ignore[call-arg]
    assert settings.local_models_dir == tmp_path / "models"
