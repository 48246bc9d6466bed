"""Turning entities and Markdown documents into retrievable chunks.

Each entity becomes one readable text (its id, type, title and fields); fields too long for
one chunk are split with langchain-text-splitters, and every chunk keeps its entity's
`entityId`, `entityType`, `filePath` and `title`. A chunk of a derived document (see
`repository.derived`) also says which entity ids it restates (`restates`), so retrieval can
count it toward them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from context_kit_service.repository.derived import mentioned_ids, split_front_matter
from context_kit_service.repository.model import Document as MarkdownDocument
from context_kit_service.repository.model import Entity, Repository

CHUNK_CHARS = 1000
CHUNK_OVERLAP = 120
VIEW_MIN_CHARS = 12
VIEW_MIN_WORDS = 4

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


def _fields(entity: Entity) -> dict[str, Any]:
    return {k: v for k, v in entity.data.items() if k not in ("id", "title", "name")}


def entity_text(entity: Entity) -> str:
    """A readable rendering: heading line, then the fields in file order."""
    return "\n".join([f"{entity.type} {entity.id}: {entity.title}", *_render(_fields(entity))])


def _metadata(
    entity_id: str,
    entity_type: str,
    path: str,
    title: str,
    index: int,
    *,
    derived: bool = False,
    restates: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "entityId": entity_id,
        "entityType": entity_type,
        "filePath": path,
        "title": title,
        "chunk": index,
        "derived": derived,
        "restates": list(restates),
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


def _restated(document: MarkdownDocument, headers: dict[str, Any]) -> tuple[str, ...]:
    """The ids a section of a derived document restates: those its own heading names, else
    those the document names."""
    if not document.derived:
        return ()
    for level in ("h3", "h2"):
        if ids := mentioned_ids(str(headers.get(level, ""))):
            return tuple(ids)
    return document.names


def _sentences(value: Any) -> list[str]:
    """The prose of a field: strings of several words (not ids, names, versions or dates)."""
    if isinstance(value, str):
        text = " ".join(value.split())
        prose = len(text) >= VIEW_MIN_CHARS and len(text.split()) >= VIEW_MIN_WORDS
        return [text] if prose else []
    if isinstance(value, dict):
        return [s for item in value.values() for s in _sentences(item)]
    if isinstance(value, list):
        return [s for item in value for s in _sentences(item)]
    return []


def entity_prose(entity: Entity) -> str:
    """The entity's sentence-like fields, in file order, as one text."""
    return " ".join(_sentences(_fields(entity)))


def entity_views(entity: Entity, explanation: str | None = None) -> list[Document]:
    """Extra vectors for an entity, one per sentence-like field (and a user story's whole
    story): a short question matches one sentence better than the whole entity. Views are
    searched densely and count toward their entity; they are not passages. The entity's
    plain-language `explanation` (`retrieval.explanations`), when it has one, is a view that
    lexical search also reads: its words are the ones a question in other words uses."""
    data = entity.data
    texts = []
    if entity.type == "userstory" and all(data.get(k) for k in ("asA", "iWant", "soThat")):
        texts.append(f"As a {data['asA']}, I want {data['iWant']}, so that {data['soThat']}.")
    texts += [f"{entity.title}: {sentence}" for sentence in _sentences(_fields(entity))]
    metadata = {**_metadata(entity.id, entity.type, entity.path, entity.title, -1), "view": True}
    views = [Document(page_content=t, metadata=metadata) for t in dict.fromkeys(texts)]
    if explanation:
        text = f"{entity.title}: {explanation}"
        views.append(Document(page_content=text, metadata={**metadata, "explanation": True}))
    return views


def document_chunks(document: MarkdownDocument) -> list[Document]:
    body = split_front_matter(document.text)[1]
    sections = _markdown.split_text(body) or [Document(page_content=body)]
    pieces = [
        (piece, _restated(document, section.metadata))
        for section in sections
        for piece in _splitter.split_text(section.page_content)
    ]
    return [
        Document(
            page_content=piece,
            metadata=_metadata(
                document.path,
                "document",
                document.path,
                document.title,
                i,
                derived=document.derived,
                restates=restates,
            ),
        )
        for i, (piece, restates) in enumerate(pieces)
    ]


def repository_chunks(
    repo: Repository, explained: Callable[[Entity], str | None] = lambda entity: None
) -> dict[str, list[Document]]:
    """Chunks (passages, and the views of entities, with the explanation `explained` finds
    for each) per repository file, keyed by relative path."""
    by_file: dict[str, list[Document]] = {}
    for entity in repo.entities.values():
        views = entity_views(entity, explained(entity))
        by_file.setdefault(entity.path, []).extend(entity_chunks(entity) + views)
    for document in repo.documents:
        by_file[document.path] = document_chunks(document)
    return by_file


def file_hash(chunks: list[Document]) -> str:
    """Identity of what a file contributes to the index: changes when its chunks change."""
    return content_hash(
        "\x1e".join(c.page_content + json.dumps(c.metadata, sort_keys=True) for c in chunks)
    )
