"""Lexical search beside FAISS: SQLite FTS5 with BM25 ranking over the same chunks.

The table is contentless (the chunk texts live in the vector store's metadata) and keyed by
the same document ids as the FAISS index. A database file belongs to one index generation
(see `generations`): a new generation starts from a copy of the previous file and applies
only the changed chunks, inside one transaction.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

FILENAME = "lexical.sqlite"
TOKENIZER = "porter unicode61 remove_diacritics 2"
"""Words split on anything but letters and digits, folded to lower case without accents,
then Porter-stemmed: `ratified`, `ratifies` and `ratify` are one term."""
MAX_QUERY_TERMS = 32
MAX_COUNTED = 10_000
"""Term counts an index keeps before it forgets them all."""
COMMON_SHARE = 0.1
COMMON_MIN = 1000
"""A query word found in more than COMMON_SHARE of the passages, and in more than COMMON_MIN,
is left out of the search when the query has a rarer one: its BM25 weight is small, and
ranking every passage it is in is what a lexical query spends its time on in a large
repository (a small one keeps every word)."""

_STOPWORDS = """a about above after again all also am an and any are as at be because been
    before being below between both but by can could did do does doing down
    during each few for from further get got had has have having he her here
    hers him his how i if in into is it its itself just may me might more most
    must my no nor not now of off on once only or other our ours out over own
    same shall she should so some such than that the their theirs them then
    there these they this those through to too under until up us very was we
    were what when where which while who whom why will with would you your yours"""
STOPWORDS = frozenset(_STOPWORDS.split())
"""Words that carry no topic: a query made only of them matches nothing."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_PAIR = re.compile(r"[a-z0-9][A-Z]")
WORD = re.compile(r"[^\W_]+")
"""A word: letters and digits in any script (what FTS5's unicode61 tokenizer keeps)."""
_ID = re.compile(r"\b([A-Za-z]+)-(\d+)\b")


STEM = 5
"""Letters that identify a word when texts are compared by topic ("splitting" matches "split")."""


def topic_words(text: str) -> set[str]:
    """The content words of `text` (not stopwords, three letters or more), each cut to its first
    STEM letters."""
    lowered = (w.lower() for w in WORD.findall(text))
    return {w[:STEM] for w in lowered if w not in STOPWORDS and len(w) > 2}


def lexical_text(text: str) -> str:
    """What FTS5 indexes for a chunk: the text, plus its camelCase words split apart, so a
    field such as `ratifiedOn` matches the words "ratified" and "on"."""
    if not _CAMEL_PAIR.search(text):  # most texts: a cheap scan instead of the word search
        return text
    camel = {word for word in re.findall(r"\b\w*[a-z0-9][A-Z]\w*\b", text)}
    return text + "\n" + " ".join(_CAMEL.sub(" ", word) for word in sorted(camel))


def query_terms(query: str) -> list[str]:
    """The FTS5 terms of free text: every topical word, quoted (so no query syntax gets
    through), and entity ids such as FEAT-001 as phrases."""
    terms: list[str] = []
    for prefix, number in _ID.findall(query):
        terms.append(f'"{prefix.lower()} {number}"')
    for word in WORD.findall(lexical_text(query)):
        lowered = word.lower()
        if lowered not in STOPWORDS and (len(lowered) > 1 or lowered.isdigit()):
            terms.append(f'"{lowered}"')
    return list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's terms. None when it has no topical word."""
    terms = query_terms(query)
    return " OR ".join(terms) if terms else None


class LexicalIndex:
    """One FTS5 database file: `add`, `delete` and `search` by document id."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = path
        mode = "mode=rwc" if writable else "mode=ro&immutable=1"  # a committed file never changes
        self._db = sqlite3.connect(
            f"{path.absolute().as_uri()}?{mode}",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
        self._lock = threading.Lock()
        self._rows: int | None = None
        """Passages in the file, counted once (a committed file never changes)."""
        self._counted: dict[str, int] = {}
        """Passages holding each term, up to the cap + 1, counted once: a search and the shares
        of its hits count the same terms."""
        if not writable:  # open the file now: its folder may be renamed or removed later
            self._db.execute("SELECT 1 FROM chunks LIMIT 1").fetchall()
        if writable:
            self._db.execute("PRAGMA journal_mode=OFF")  # a staging file: a crash discards it
            self._db.execute("PRAGMA synchronous=OFF")  # fsynced once, when the file is done
            self._db.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5("
                f"text, content='', tokenize='{TOKENIZER}')"
            )

    @classmethod
    def create(cls, path: Path, source: LexicalIndex | None = None) -> LexicalIndex:
        """A writable database at `path`: a copy of `source` when given, else empty. The copy
        reads through the source's open connection, so it works even when another process
        has already replaced and removed the source's generation."""
        if source is not None:
            target = sqlite3.connect(path)
            try:
                with source._lock:
                    source._db.backup(target)
            finally:
                target.close()
        return cls(path, writable=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def apply(self, removed: Iterable[tuple[int, str]], added: Iterable[tuple[int, str]]) -> None:
        """Remove and add chunks (id, text) in one transaction. A contentless table forgets
        the texts, so a removal must pass the text that was added."""
        with self._lock:
            self._rows = None
            self._counted.clear()
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO chunks(chunks, rowid, text) VALUES('delete', ?, ?)",
                ((i, lexical_text(t)) for i, t in removed),
            )
            self._db.executemany(
                "INSERT INTO chunks(rowid, text) VALUES(?, ?)",
                ((i, lexical_text(t)) for i, t in added),
            )
            self._db.execute("COMMIT")

    def _cap(self) -> tuple[int, int]:
        """The passages in the index, and how many a word may be in and still count as rare
        (call with the lock held)."""
        if self._rows is None:
            self._rows = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return self._rows, max(COMMON_MIN, int(self._rows * COMMON_SHARE))

    def _counts(self, terms: list[str], cap: int) -> list[int]:
        """How many passages hold each term, counted up to cap + 1 (call with the lock held)."""
        if len(self._counted) > MAX_COUNTED:
            self._counted.clear()
        for term in terms:
            if term not in self._counted:
                self._counted[term] = self._db.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM chunks WHERE chunks MATCH ? LIMIT ?)",
                    (term, cap + 1),
                ).fetchone()[0]
        return [self._counted[term] for term in terms]

    def _telling(self, terms: list[str]) -> list[str]:
        """`terms` without the common ones, unless every one is common."""
        with self._lock:
            rows, cap = self._cap()
            if cap >= rows:
                return terms
            counts = self._counts(terms, cap)
        rare = [term for term, count in zip(terms, counts, strict=True) if count <= cap]
        return rare or terms

    def ids(self) -> set[int]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT rowid FROM chunks")}

    def shares(self, query: str, passages: Mapping[int, str]) -> dict[int, float]:
        """How much of the query each of `passages` (id -> text) holds, in [0, 1]: the summed
        inverse document frequency (in this index) of the query's terms it contains over that
        of all of them; a term no passage of the index holds weighs most. A passage with a
        question's rare word holds most of the question; one that shares only its common
        words, or any passage for a question asked in other words, little. The passages are
        matched in a scratch table of their own: reading this index's posting lists of
        common words for a few passages would cost more."""
        terms = query_terms(query)
        if not terms or not passages:
            return dict.fromkeys(passages, 0.0)
        with self._lock:
            rows, cap = self._cap()
            counts = self._counts(terms, cap)
        scratch = sqlite3.connect(":memory:")
        try:
            scratch.execute(
                f"CREATE VIRTUAL TABLE p USING fts5(text, content='', tokenize='{TOKENIZER}')"
            )
            scratch.executemany(
                "INSERT INTO p(rowid, text) VALUES (?, ?)",
                ((i, lexical_text(text)) for i, text in passages.items()),
            )
            holders = [
                {row[0] for row in scratch.execute("SELECT rowid FROM p WHERE p MATCH ?", (term,))}
                for term in terms
            ]
        finally:
            scratch.close()
        weights = [math.log(1 + (rows - n + 0.5) / (n + 0.5)) for n in counts]
        total = sum(weights)
        return {
            i: sum(w for w, held in zip(weights, holders, strict=True) if i in held) / total
            for i in passages
        }

    def search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """The `limit` best chunks for `query`: (id, BM25 score, higher is better)."""
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        expression = " OR ".join(self._telling(terms))
        with self._lock:
            rows: Sequence[tuple[int, float]] = self._db.execute(
                "SELECT rowid, -bm25(chunks) FROM chunks WHERE chunks MATCH ? "
                "ORDER BY bm25(chunks) LIMIT ?",
                (expression, limit),
            ).fetchall()
        return [(int(i), float(s)) for i, s in rows]
