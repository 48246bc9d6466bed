"""Packaged models: GGUFs assembled once from their installed parts, and refused unless the
file has the model's exact size and sha256; embeddings models unpacked once from such an
archive, never outside their folder."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from context_kit_service.local_models.packaged import (
    PACKAGED_EMBEDDINGS,
    PACKAGED_MODELS,
    PackagedModel,
    packaged_folder,
    packaged_gguf,
)
from context_kit_service.provider_errors import ProviderError
from context_kit_service.settings import Settings
from tests.conftest import REPO_ROOT, SHARED_MODELS

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3]


def install_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[tuple[str, str, bytes]]
) -> tuple[tuple[str, str], ...]:
    """Each (package, file inside it, data) as an installed package on sys.path, like the real
    parts; the `parts` that name them."""
    site = tmp_path / "site"
    for package, relative, data in files:
        (site / package / relative).parent.mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        (site / package / relative).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return tuple((package, relative) for package, relative, _ in files)


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A model in three installed parts."""
    files = [
        (f"cks_fake_part{n}", f"data/part{n:02d}.bin", data) for n, data in enumerate(PARTS, 1)
    ]
    whole = b"".join(PARTS)
    return PackagedModel(
        name="fake",
        file_name="fake.gguf",
        parts=install_parts(tmp_path, monkeypatch, files),
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


def test_the_models_folder_defaults_to_the_users_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every data dir shares one assembled copy of each model."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_dir=None)  # type: ignore[call-arg]
    assert settings.local_models_dir == tmp_path / "cache" / "context-kit-service" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    home = Path.home() / ".cache" / "context-kit-service" / "models"
    assert Settings(_env_file=None, models_dir=None).local_models_dir == home  # type: ignore[call-arg]


# --- embeddings models: a zip archive of a sentence-transformers folder ----------------------


def archive_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes]
) -> PackagedModel:
    """A zip archive of `members`, split into two installed parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    whole = buffer.getvalue()
    halves = (whole[: len(whole) // 2], whole[len(whole) // 2 :])
    files = [
        (f"cks-fake-archive_{n:03d}", f"input/m.zip.{n:03d}", data)
        for n, data in enumerate(halves, 1)
    ]
    return PackagedModel(
        name="fake-embeddings",
        file_name="m.zip",
        parts=install_parts(tmp_path, monkeypatch, files),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="make install",
        unpack="m",
    )


def test_an_archived_model_is_unpacked_once_without_its_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = archive_parts(
        tmp_path,
        monkeypatch,
        {
            "m/modules.json": b"[]",
            "m/1_Pooling/config.json": b"{}",
            "m/desktop.ini": b"[.ShellClassInfo]",
            "other/ignored.txt": b"not the model",
        },
    )
    models = tmp_path / "models"
    folder = packaged_folder(model, models)
    assert folder == models / "m"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "modules.json"]
    # no archive, no staging left; the lock the starting processes take stays
    assert sorted(p.name for p in models.iterdir()) == [".m.lock", "m"]
    written = (folder / "modules.json").stat().st_mtime_ns
    assert packaged_folder(model, models) == folder
    assert (folder / "modules.json").stat().st_mtime_ns == written


@pytest.mark.parametrize("escape", ["m/../../escaped.txt", "/m/absolute.txt", "m\\..\\x.txt"])
def test_an_archive_member_outside_the_model_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, escape: str
) -> None:
    model = archive_parts(tmp_path, monkeypatch, {"m/modules.json": b"[]", escape: b"x"})
    models = tmp_path / "models"
    with pytest.raises(ProviderError) as refused:
        packaged_folder(model, models)
    assert (refused.value.code, refused.value.message) == (
        "MODEL_CORRUPT",
        f"{models / 'm.zip'} has a member outside its folder: {escape!r}",
    )
    assert sorted(p.name for p in models.iterdir()) == [".m.lock", "m.zip"]  # no folder, no staging
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "site"]


def test_an_archive_without_the_model_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = archive_parts(tmp_path, monkeypatch, {"elsewhere/modules.json": b"[]"})
    models = tmp_path / "models"
    with pytest.raises(ProviderError) as refused:
        packaged_folder(model, models)
    assert refused.value.message == f"{models / 'm.zip'} has no folder m/"
    assert sorted(p.name for p in models.iterdir()) == [".m.lock", "m.zip"]


def test_a_tampered_archive_is_refused_before_it_is_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = archive_parts(tmp_path, monkeypatch, {"m/modules.json": b"[]"})
    tampered = PackagedModel(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(ProviderError) as refused:
        packaged_folder(tampered, tmp_path / "models")
    assert refused.value.code == "MODEL_CORRUPT"
    assert f"its sha256 is {model.sha256}, not {'0' * 64}" in refused.value.message
    assert not (tmp_path / "models" / "m").exists()


def test_mpnet_is_named_by_its_archive_and_exported_with_int8_weights() -> None:
    mpnet = PACKAGED_EMBEDDINGS["all-mpnet-base-v2"]
    assert (mpnet.unpack, mpnet.int8, mpnet.install) == ("all-mpnet-base-v2", True, "make install")
    lock = (REPO_ROOT / "requirements-models.lock").read_text()
    pinned = [line.split("==")[0] for line in lock.splitlines() if line.startswith("all-mpnet")]
    assert [p.replace("-", "_") for p in pinned] == [
        package.replace("-", "_") for package, _ in mpnet.parts
    ]


def test_processes_starting_together_unpack_the_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = random.Random(7).randbytes(64 << 20)  # big enough for the starts to overlap
    model = archive_parts(tmp_path, monkeypatch, {"m/modules.json": b"[]", "m/w.bin": weights})
    models = tmp_path / "models"
    script = (
        "import json, sys; from pathlib import Path;"
        "from context_kit_service.local_models.packaged import PackagedModel, packaged_folder;"
        "fields = json.loads(sys.argv[1]); fields['parts'] = tuple(map(tuple, fields['parts']));"
        "print(packaged_folder(PackagedModel(**fields), Path(sys.argv[2])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(model.__dict__), str(models)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    answers = [(p.wait(timeout=120), *p.communicate()) for p in starts]
    assert [(code, out.strip()) for code, out, _ in answers] == [(0, str(models / "m"))] * 4, [
        err for _, _, err in answers
    ]
    assert (models / "m" / "w.bin").read_bytes() == weights
    assert sorted(p.name for p in models.iterdir()) == [".m.lock", "m"]
