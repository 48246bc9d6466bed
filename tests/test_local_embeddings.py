"""The embedded models on ONNX Runtime (MiniLM, and mpnet's int8 export on a CPU without VNNI
at the end): the same vectors as sentence-transformers, exported once into the cache, and
sentence-transformers itself where the export does not apply."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from context_kit_service.local_models import LocalEmbeddings, minilm_path
from context_kit_service.local_models.embeddings import (
    INT8_AGREEMENT,
    INT8_WEIGHTS,
    PROBE_TEXTS,
    OnnxEncoder,
    TorchEncoder,
    agreement_with,
    blocked_weights,
    down_projections,
    export,
    int8_weights,
    model_folder,
    sentence_transformer,
)
from tests.conftest import SHARED_MODELS

TEXTS = [
    "  Which service owns the ledger?  ",
    "a",
    "berth " * 400,  # past the model's 256 tokens: cut as sentence-transformers cuts it
    "Ünïcödé — 漢字 and a ship 🚢",
    "\tTabs\nand newlines\n",
    "FEAT-001 depends on SVC-002 and PKG-003",
    "",
]


def reference(model_path: Path, texts: list[str]) -> np.ndarray:
    model = sentence_transformer(model_path)
    vectors: np.ndarray = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return vectors


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> LocalEmbeddings:
    embeddings = LocalEmbeddings(
        "all-MiniLM-L6-v2", cache_dir=tmp_path_factory.mktemp("cache"), batch_size=3
    )
    assert isinstance(embeddings.encoder, OnnxEncoder)
    return embeddings


def test_onnx_vectors_are_the_sentence_transformers_vectors(exported: LocalEmbeddings) -> None:
    expected = reference(minilm_path(), TEXTS)
    documents = np.array(exported.embed_documents(TEXTS))  # batches of 3 of mixed lengths
    queries = np.array([exported.embed_query(text) for text in TEXTS])
    assert documents.shape == queries.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(documents, expected, atol=1e-5)
    np.testing.assert_allclose(queries, expected, atol=1e-5)
    assert exported.dimension == 384


def test_the_export_is_made_once_and_later_loads_need_no_torch(exported: LocalEmbeddings) -> None:
    (folder,) = [path for path in exported.cache_dir.iterdir()]  # no staging folder left
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.onnx", "tokenizer.json"]
    written = (folder / "model.onnx").stat().st_mtime_ns
    script = (
        "import sys, json; from pathlib import Path;"
        "from context_kit_service.local_models import LocalEmbeddings;"
        f"e = LocalEmbeddings('all-MiniLM-L6-v2', cache_dir=Path({str(exported.cache_dir)!r}));"
        "v = e.embed_query('Which service owns the ledger?');"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'vector': v}))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = __import__("json").loads(answer.stdout.splitlines()[-1])
    assert loaded["torch"] is False
    np.testing.assert_allclose(
        loaded["vector"], exported.embed_query("Which service owns the ledger?"), atol=1e-6
    )
    assert (folder / "model.onnx").stat().st_mtime_ns == written
    assert [path for path in exported.cache_dir.iterdir()] == [folder]


def test_a_pooling_the_export_does_not_cover_runs_through_sentence_transformers(
    tmp_path: Path,
) -> None:
    from sentence_transformers.models import Normalize, Pooling, Transformer

    base = sentence_transformer(minilm_path())
    max_pooled = type(base)(
        modules=[
            Transformer(str(minilm_path())),
            Pooling(384, pooling_mode="max"),
            Normalize(),
        ],
        device="cpu",
    )
    max_pooled.save(str(tmp_path / "max-pooled"))
    embeddings = LocalEmbeddings(str(tmp_path / "max-pooled"), cache_dir=tmp_path / "cache")
    assert isinstance(embeddings.encoder, TorchEncoder)
    expected = reference(tmp_path / "max-pooled", TEXTS[:3])
    np.testing.assert_allclose(np.array(embeddings.embed_documents(TEXTS[:3])), expected, atol=1e-6)
    assert list((tmp_path / "cache").glob("*/model.onnx")) == []


def test_a_cache_that_cannot_be_written_runs_through_sentence_transformers(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    embeddings = LocalEmbeddings("all-MiniLM-L6-v2", cache_dir=blocked / "cache")
    assert isinstance(embeddings.encoder, TorchEncoder)
    np.testing.assert_allclose(
        np.array(embeddings.embed_documents(TEXTS[:2])),
        reference(minilm_path(), TEXTS[:2]),
        atol=1e-6,
    )


def test_an_int8_export_has_its_own_cache_entry_and_nearly_the_same_vectors(
    exported: LocalEmbeddings, tmp_path: Path
) -> None:
    import onnx

    from context_kit_service.local_models.embeddings import cache_key, load_encoder

    model = minilm_path()
    int8 = load_encoder(model, tmp_path, int8=True)
    assert isinstance(int8, OnnxEncoder)
    folder = tmp_path / cache_key(model, int8=True)
    assert cache_key(model, int8=True) != cache_key(model)
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.onnx", "tokenizer.json"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["int8"] is True
    assert meta["int8Weights"] == "8-bit"
    assert list(meta["int8Agreement"]) == ["8-bit"]  # agreed: 7-bit weights were not tried
    assert INT8_AGREEMENT <= meta["int8Agreement"]["8-bit"] < 1
    full = next(exported.cache_dir.glob("*/model.onnx"))
    # the embedding table stays float
    assert (folder / "model.onnx").stat().st_size < 0.7 * full.stat().st_size
    layers = range(6)
    assert down_projections(full) == [
        f"/transformer/encoder/layer.{i}/output/dense/MatMul" for i in layers
    ]
    products = {n.name: n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}
    assert {name: products[name] for name in down_projections(full)} == dict.fromkeys(
        down_projections(full), "MatMulNBits"
    )
    assert {
        products[f"/transformer/encoder/layer.{i}/intermediate/dense/MatMul_quant"] for i in layers
    } == {"MatMulInteger"}
    quantized = int8.encode(TEXTS[:-1], 3)
    expected = np.array(exported.embed_documents(TEXTS[:-1]))
    cosines = np.sum(quantized * expected, axis=1)
    assert cosines.min() > 0.97, cosines
    assert not np.allclose(quantized, expected, atol=1e-3)  # int8 weights, not the float ones


def test_blocked_weights_keep_each_block_of_inputs_to_its_own_scale(tmp_path: Path) -> None:
    """Two products: one whose 64 inputs make two blocks (its second block's weights a
    thousand times larger, as an outlier would be), and one of 40 inputs, not a whole number
    of blocks, which stays as it is. The blocked product is the float one within 8-bit
    rounding of each block, the small block's weights included."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    first = rng.standard_normal((64, 16)).astype(np.float32)
    first[32:] *= 1000
    second = rng.standard_normal((40, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["y"], name="blocked"),
            helper.make_node("MatMul", ["z", "w2"], ["u"], name="left"),
        ],
        "two-products",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 40]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16]),
            helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, 8]),
        ],
        [numpy_helper.from_array(first, "w1"), numpy_helper.from_array(second, "w2")],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    blocked_weights(path, ["blocked", "left"])
    assert [(n.name, n.op_type) for n in onnx.load(str(path)).graph.node] == [
        ("blocked", "MatMulNBits"),
        ("left", "MatMul"),
    ]
    x = np.zeros((1, 64), np.float32)
    x[0, :32] = rng.standard_normal(32)  # only the small block's inputs
    z = rng.standard_normal((1, 40)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, u = session.run(None, {"x": x, "z": z})
    np.testing.assert_allclose(u, z @ second, rtol=1e-6)
    expected = x @ first
    assert np.abs(y - expected).max() < 0.05 * np.abs(expected).max()


def test_int8_weights_that_disagree_with_the_model_are_not_kept(
    exported: LocalEmbeddings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agreement no export can reach: 8-bit weights with blockwise down-projections, then
    7-bit ones with float down-projections are tried, and the full-precision export is kept."""
    model = minilm_path()
    folder = tmp_path / "export"
    export(model, folder, int8=True, agreement=1.01)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["int8"] is False
    assert meta["int8Weights"] is None
    assert list(meta["int8Agreement"]) == ["8-bit", "7-bit"]
    assert all(INT8_AGREEMENT <= value < 1 for value in meta["int8Agreement"].values())
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.onnx", "tokenizer.json"]
    full = next(exported.cache_dir.glob("*/model.onnx"))
    assert (folder / "model.onnx").stat().st_size == full.stat().st_size
    kept = OnnxEncoder(folder).encode(TEXTS, 3)
    assert np.allclose(kept, np.array(exported.embed_documents(TEXTS)), atol=1e-6)
    assert (
        f"{model} stays in full precision: its int8 weights agree with it by cosine "
        f"{meta['int8Agreement']} on this CPU (by weights), 1.01 is needed"
    ) in caplog.text


EMULATOR = shutil.which("qemu-x86_64")


def test_without_vnni_mpnet_needs_7_bit_weights(tmp_path: Path) -> None:
    """all-mpnet-base-v2 on a CPU without VNNI, emulated by qemu-user (`-cpu max`
    is AVX2 without AVX-512 or VNNI; `make test` installs Debian's qemu-user): its 8-bit
    weights give unrelated vectors there, the 7-bit ones that `quantize` tries next agree."""
    assert EMULATOR is not None, "qemu-x86_64 is missing: apt-get install qemu-user"
    model, int8 = model_folder("all-mpnet-base-v2", SHARED_MODELS)
    assert int8 is True
    export(model, tmp_path / "full")
    full = tmp_path / "full" / "model.onnx"
    down = down_projections(full)
    for weights in INT8_WEIGHTS:
        folder = tmp_path / weights.name
        shutil.copytree(tmp_path / "full", folder)
        int8_weights(full, folder / "model.onnx", weights, down)
    expected = reference(model, list(PROBE_TEXTS[:2]))
    np.save(tmp_path / "expected.npy", expected)
    here = agreement_with(tmp_path / "7-bit", expected)
    script = (
        "import json, sys, numpy; from pathlib import Path;"
        "from context_kit_service.local_models.embeddings import INT8_WEIGHTS, agreement_with;"
        "root = Path(sys.argv[1]); expected = numpy.load(root / 'expected.npy');"
        "print(json.dumps({w.name: agreement_with(root / w.name, expected) for w in INT8_WEIGHTS}))"
    )
    emulated = subprocess.run(
        [EMULATOR, "-cpu", "max", sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    without_vnni = json.loads(emulated.stdout.splitlines()[-1])
    assert without_vnni["8-bit"] < 0.5, without_vnni  # saturated
    assert without_vnni["7-bit"] >= INT8_AGREEMENT
    assert without_vnni["7-bit"] == pytest.approx(here, abs=1e-3)  # 7 bits: the same everywhere
    assert here >= INT8_AGREEMENT


def test_the_first_use_exports_in_a_child_and_the_serving_process_never_imports_torch(
    tmp_path: Path,
) -> None:
    """A fresh cache: the export runs (through torch) in a process of its own; the process
    that embeds has ONNX Runtime only, before and after, so it gives nothing to torch."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from context_kit_service.local_models import LocalEmbeddings\n"
        f"embeddings = LocalEmbeddings(cache_dir=Path({str(tmp_path)!r}))\n"
        "vector = embeddings.embed_query('a sentence')\n"
        "print(len(vector), 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["384", "False"]
    assert len(list(tmp_path.glob("*/model.onnx"))) == 1


def test_a_batch_of_long_documents_gives_its_memory_back(exported: LocalEmbeddings) -> None:
    """Indexing embeds batches of long passages (hundreds of MB of activations in ONNX
    Runtime's arena); afterwards the process is back within 150 MB of where it was (it
    stayed 1.5 GB higher before), measured in a fresh process."""
    import subprocess
    import sys

    script = (
        "import psutil\n"
        "from pathlib import Path\n"
        "from context_kit_service.local_models import LocalEmbeddings\n"
        f"embeddings = LocalEmbeddings(cache_dir=Path({str(exported.cache_dir)!r}))\n"
        "embeddings.embed_query('warm up')\n"
        "before = psutil.Process().memory_info().rss\n"
        "for _ in range(3):\n"
        "    embeddings.embed_documents(['word ' * 300] * 64)\n"
        "print((psutil.Process().memory_info().rss - before) // 2**20)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 150
