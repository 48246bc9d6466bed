"""The embedded, offline models: a GGUF chat model through llama.cpp and sentence-transformers
embeddings on ONNX Runtime.

Both load lazily on first use (importing llama.cpp or ONNX Runtime costs time and memory; torch
is imported only once per model, to export it to ONNX).
One llama.cpp instance exists per (file, context size); it runs on its own single worker
thread, which serialises concurrent calls and keeps the event loop free. Generation checks a
cancellation flag between tokens, so a closed stream stops the model within one token.
"""

from context_kit_service.local_models.chat import LocalChatModel, structured
from context_kit_service.local_models.embeddings import LocalEmbeddings, minilm_path
from context_kit_service.local_models.packaged import DEFAULT_LOCAL_MODEL, PACKAGED_MODELS
from context_kit_service.local_models.runtime import gguf_path
from context_kit_service.local_models.transcript import format_transcript

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "PACKAGED_MODELS",
    "LocalChatModel",
    "LocalEmbeddings",
    "format_transcript",
    "gguf_path",
    "minilm_path",
    "structured",
]
