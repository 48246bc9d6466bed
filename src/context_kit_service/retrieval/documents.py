"""Turning entities and Markdown documents into retrievable chunks.

Each entity becomes one readable text (its id, type, title and fields); fields too long for
one chunk are split with langchain-text-splitters, and every chunk keeps its entity's
`entityId`, `entityType`, `filePath` and `title`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from context_kit_service.repository.model import Document as MarkdownDocument
from context_kit_service.repository.model import Entity, Repository

CHUNK_CHARS = 1000
CHUNK_OVERLAP = 120

_splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP)
_markdown = MarkdownHeaderTextSplitter(
    headers_to_split_on=[("#", "h1"), ("##", "h2"), ("###", "h3")], strip_headers=False
)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _render(value: Any, indent: str = "") -> list[str]:
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list):
                lines.append(f"{indent}{key}:")
                lines.extend(_render(item, indent + "  "))
            else:
                lines.append(f"{indent}{key}: {item}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict | list):
                lines.extend(_render(item, indent + "  "))
            else:
                lines.append(f"{indent}- {item}")
        return lines
    return [f"{indent}{value}"]


def entity_text(entity: Entity) -> str:
    """A readable rendering: heading line, then the fields in file order."""
    fields = {k: v for k, v in entity.data.items() if k not in ("id", "title", "name")}
    return "\n".join([f"{entity.type} {entity.id}: {entity.title}", *_render(fields)])


def _metadata(
    entity_id: str, entity_type: str, path: str, title: str, index: int
) -> dict[str, Any]:
    return {
        "entityId": entity_id,
        "entityType": entity_type,
        "filePath": path,
        "title": title,
        "chunk": index,
    }


def entity_chunks(entity: Entity) -> list[Document]:
    text = entity_text(entity)
    heading = text.split("\n", 1)[0]
    pieces = _splitter.split_text(text) if len(text) > CHUNK_CHARS else [text]
    return [
        Document(
            page_content=piece if i == 0 else f"{heading}\n{piece}",
            metadata=_metadata(entity.id, entity.type, entity.path, entity.title, i),
        )
        for i, piece in enumerate(pieces)
    ]


def document_chunks(document: MarkdownDocument) -> list[Document]:
    sections = [s.page_content for s in _markdown.split_text(document.text)] or [document.text]
    pieces = [p for section in sections for p in _splitter.split_text(section)]
    return [
        Document(
            page_content=piece,
            metadata=_metadata(document.path, "document", document.path, document.title, i),
        )
        for i, piece in enumerate(pieces)
    ]


def repository_chunks(repo: Repository) -> dict[str, list[Document]]:
    """Chunks per repository file (entity YAML or Markdown), keyed by relative path."""
    by_file: dict[str, list[Document]] = {}
    for entity in repo.entities.values():
        by_file.setdefault(entity.path, []).extend(entity_chunks(entity))
    for document in repo.documents:
        by_file[document.path] = document_chunks(document)
    return by_file


def file_hash(chunks: list[Document]) -> str:
    """Identity of what a file contributes to the index: changes when its chunks change."""
    return content_hash("\x1e".join(c.page_content for c in chunks))
