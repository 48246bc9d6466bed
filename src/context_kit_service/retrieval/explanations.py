"""Plain-language explanations of entities, written once by a chat model, searched as views.

A question asked in everyday words ("the raw radio chatter from coastal masts") may share no
word with the entity that answers it ("NMEA 0183 AIVDM sentences"), and an embeddings model
does not know that the two are one thing. What bridges them is knowing what the terms mean.
`context-kit-service index --explain` asks a chat model (`graphs.explanation`), once per
entity, to say what the entity is in plain words (document expansion, as doc2query does);
each explanation is then indexed as one more view of its entity, which lexical search reads
too (the explanation's plain words are the ones a question asked in other words uses).

Explanations are kept in the data dir, keyed by a hash of the text they explain: an unchanged
entity is never explained twice, an edited one is explained afresh (its old explanation is no
longer found), and every repository and replica shares them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from context_kit_service.repository.model import Entity
from context_kit_service.retrieval.documents import content_hash, entity_prose

log = logging.getLogger(__name__)

FILENAME = "explanations.sqlite"
SOURCE_CHARS = 700
"""The most of an entity's prose the model is shown."""
EXPLANATION_CHARS = 600
"""The most of an explanation that is kept (about two sentences more than asked for)."""

_SCHEMA = """CREATE TABLE IF NOT EXISTS explanations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL
)"""


def source(entity: Entity) -> str:
    """What the model is asked to explain: the entity's type, title and prose."""
    return f"{entity.type} {entity.title}: {entity_prose(entity)}"[:SOURCE_CHARS]


def key(entity: Entity) -> str:
    return content_hash(source(entity))


def store_path(data_dir: Path) -> Path:
    return data_dir / FILENAME


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
        yield connection
    finally:
        connection.close()


def read(data_dir: Path) -> dict[str, str]:
    """Every stored explanation by key; none when nothing was ever explained here, or when
    the store cannot be read (explanations only add to retrieval: it goes on without them)."""
    path = store_path(data_dir)
    if not path.is_file():
        return {}
    try:
        with _connect(path) as connection:
            return dict(connection.execute("SELECT key, text FROM explanations"))
    except sqlite3.Error as exc:
        log.warning("entity explanations left out: %s cannot be read (%s)", path, exc)
        return {}


def finder(data_dir: Path) -> Callable[[Entity], str | None]:
    """The stored explanation of an entity, if it has one (read once, when called)."""
    stored = read(data_dir)
    return lambda entity: stored.get(key(entity))


def clean(text: str) -> str:
    """An explanation as kept: one line, at most EXPLANATION_CHARS."""
    return " ".join(text.split())[:EXPLANATION_CHARS]


def missing(entities: Iterable[Entity], data_dir: Path) -> dict[str, Entity]:
    """The entities with no stored explanation, by key."""
    known = read(data_dir)
    keyed = {key(e): e for e in entities}
    return {k: e for k, e in keyed.items() if k not in known}


def save(data_dir: Path, explained: Iterable[tuple[str, str, str]]) -> int:
    """Store (key, model, text) triples as they come, each in its own transaction (an
    interrupted run keeps what it finished); empty texts are skipped. Returns how many were
    stored."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stored = 0
    with _connect(store_path(data_dir)) as connection:
        for entity_key, model, text in explained:
            if text := clean(text):
                with connection:
                    connection.execute(
                        "INSERT OR REPLACE INTO explanations VALUES (?, ?, ?)",
                        (entity_key, model, text),
                    )
                stored += 1
    return stored
