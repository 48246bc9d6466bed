"""Hybrid search over a repository's index: the `top_k` most relevant distinct entities (and
Markdown documents) for a query, refreshing the index first.

1. Dense search (FAISS, cosine) over passages and entity views (one vector per sentence-like
   field, and an entity's plain-language explanation when `index --explain` wrote one), and
   lexical search (FTS5, BM25) over passages and explanations, each return their best chunks.
2. Each search ranks groups by their best chunk. A group is what a chunk is about: its
   entity, its plain document, or, for a chunk of a derived document, the entities it
   restates (such a chunk counts toward them, and they are returned with it as a supporting
   excerpt). A derived document that restates no known entity comes after everything else.
3. Weighted reciprocal rank fusion: a group ranked r-th by a search adds weight/(RRF_K + r),
   the weight being that of the chunk that ranked it. A dense chunk weighs 1; a lexical chunk
   weighs the square of the share of the question it holds (`LexicalIndex.shares`: its
   query words weighted by their rarity). A passage holding the question's rare word weighs
   nearly 1, so rare words and the words of a derived document count in full; a passage
   that shares only a common word with a question asked in other words weighs little, so
   meaning decides those.
4. The entity-type filter, then maximal marginal relevance when asked for.

`relevance_score` is the fused score over the best a group can score for the query (first in
dense search and first in lexical search by the passage holding most of the question), so
1.0 means ranked first by both searches. `CKS_MIN_RELEVANCE` is the least cosine
similarity a chunk needs to count as a dense match; a lexical match needs a query word that
is not a stopword.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, Field

from context_kit_service.providers import embeddings_spec, get_embeddings
from context_kit_service.repository.model import Signature
from context_kit_service.retrieval.lexical import topic_words
from context_kit_service.settings import RetrievalMode, Settings

if TYPE_CHECKING:
    from context_kit_service.retrieval.index import RepositoryIndex

MAX_TOP_K = 20
EXCERPT_CHARS = 200
RRF_K = 5
"""The reciprocal rank fusion constant (Cormack, Clarke and Büttcher, SIGIR 2009, use 60). A
small constant trusts the first ranks of each search more; 5 was best on both sample
repositories' question sets (`bench/retrieval_quality.py` sweeps it)."""
CANDIDATES = 50
"""Groups each search contributes to the fusion (at least 8 × top_k)."""
VIEWS = 4
"""Dense search fetches this many chunks per candidate: an entity's views crowd its ranks."""
MAX_SUPPORT = 2
"""Supporting excerpts from derived documents shown per entity."""


class Support(BaseModel):
    file_path: str = Field(description="The derived document (a prompt, checklist, index...).")
    excerpt: str = Field(description="Its passage that matched, shortened.")


class Source(BaseModel):
    entity_id: str = Field(description="Entity id, or the path of a Markdown document.")
    entity_type: str = Field(description="feature, userstory, ..., or document.")
    title: str = Field(description="The entity's title.")
    relevance_score: float = Field(
        ge=0,
        le=1,
        description="The fused rank score over the best possible one: 1 = ranked first by both "
        "dense and lexical search.",
    )
    excerpt: str = Field(description="The entity's best matching passage (shortened).")
    file_path: str = Field(description="Repository-relative file of the entity.")
    supporting: list[Support] = Field(
        default_factory=list,
        description="Passages of derived documents that restate this entity and matched.",
    )


SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9*#(\[-])")


def _units(text: str, heading: bool) -> list[str]:
    """A chunk's fields (each unindented line with the indented lines under it), flattened and
    split into sentences; without its first line when that is the `heading`."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if blocks and line[:1].isspace():
            blocks[-1].append(line.strip())
        else:
            blocks.append([line.strip()])
    flat = (" ".join(" ".join(block).split()) for block in blocks[1 if heading else 0 :])
    return [sentence for block in flat for sentence in SENTENCE_END.split(block)]


def excerpt(text: str, query: str, *, heading: bool = False) -> str:
    """What of a chunk answers `query`, at most EXCERPT_CHARS long: the whole chunk when it fits,
    else its sentences and fields that share the most words with the query
    (`lexical.topic_words`), then the first ones, kept in their order (the best one cut short
    when it alone is too long). `heading`: the first line repeats the entity's id, type and
    title (shown beside the excerpt), so it is left out."""
    units = _units(text, heading)
    flat = " ".join(units)
    if len(flat) <= EXCERPT_CHARS:
        return flat
    wanted = topic_words(query)
    ranked = sorted(range(len(units)), key=lambda i: -len(wanted & topic_words(units[i])))
    chosen: dict[int, str] = {}
    room = EXCERPT_CHARS
    for i in ranked:
        unit = units[i]
        if not chosen and len(unit) > room:
            unit = unit[: room - 1].rstrip() + "…"
        if len(unit) <= room:
            chosen[i] = unit
            room -= len(unit) + 1
    return " ".join(chosen[i] for i in sorted(chosen))


def repository_index(
    settings: Settings, root: Path, embeddings: Embeddings | None = None
) -> tuple[RepositoryIndex, Embeddings]:
    """The repository's index (built once per process and embeddings model) and the embeddings
    it uses: `embeddings`, or the configured provider's."""
    from context_kit_service.retrieval.index import embeddings_model_id, indexes  # numpy, faiss

    if embeddings is None:
        spec = embeddings_spec(settings)
        embeddings, model_id = get_embeddings(spec), embeddings_model_id(spec)
    else:
        model_id = f"custom:{type(embeddings).__name__}"
    return indexes.get(root, settings.data_dir, embeddings, model_id), embeddings


# --- fusion and grouping ---------------------------------------------------------------------


@dataclass
class Group:
    """What chunks are about (an entity or a document), with its fused score."""

    owner: str
    orphan: bool = False
    """A derived document restating no known entity: ranked after everything else."""
    score: float = 0.0
    own: int | None = None
    """Its own best passage among the hits."""
    support: dict[str, int] = field(default_factory=dict)
    """Derived documents restating it: path -> their best passage among the hits."""


def owners(metadata: dict[str, Any], known: Callable[[str], bool]) -> tuple[list[str], bool]:
    """The groups a chunk counts toward, and whether it is an orphan derived chunk."""
    if not metadata.get("derived"):
        return [metadata["entityId"]], False
    restated = [i for i in metadata.get("restates", []) if known(i)]
    return (restated, False) if restated else ([metadata["entityId"]], True)


def fuse(
    rankings: Sequence[Sequence[tuple[int, float]]],
    docs: dict[int, Document],
    known: Callable[[str], bool],
    rrf_k: int = RRF_K,
) -> list[Group]:
    """Weighted reciprocal rank fusion by group. Each search, given as its chunks best first
    with their weights, ranks the groups by their best chunk; a group ranked r-th adds that
    chunk's weight / (rrf_k + r). Best first, orphan derived documents last."""
    groups: dict[str, Group] = {}
    for ranking in rankings:
        ranked: set[str] = set()
        for doc_id, weight in ranking:
            metadata = docs[doc_id].metadata
            names, orphan = owners(metadata, known)
            for owner in names:
                found = groups.setdefault(owner, Group(owner, orphan))
                if owner not in ranked:
                    ranked.add(owner)
                    found.score += weight / (rrf_k + len(ranked))
                if metadata.get("view"):
                    continue
                if owner == metadata["entityId"]:
                    found.own = doc_id if found.own is None else found.own
                else:
                    found.support.setdefault(metadata["filePath"], doc_id)
    return sorted(groups.values(), key=lambda g: (g.orphan, -g.score))


# --- the search --------------------------------------------------------------------------------


def search(
    settings: Settings,
    root: Path,
    query: str,
    *,
    top_k: int = 5,
    entity_types: Sequence[str] = (),
    mmr: bool = False,
    min_score: float | None = None,
    embeddings: Embeddings | None = None,
    signature: Signature | None = None,
    mode: RetrievalMode | None = None,
) -> list[Source]:
    """The `top_k` most relevant distinct entities for `query`, in the calling thread (the
    index is refreshed first; pass `signature` when just computed). `embeddings` replaces
    the configured embeddings provider; `min_score` defaults to CKS_MIN_RELEVANCE and `mode`
    to CKS_RETRIEVAL ("dense" leaves lexical search out)."""
    index, embeddings = repository_index(settings, root, embeddings)
    index.ensure_fresh(signature)
    vector = embeddings.embed_query(query)
    with index.searching():
        return search_index(
            index,
            vector,
            query,
            top_k=top_k,
            entity_types=entity_types,
            mmr=mmr,
            min_score=settings.min_relevance if min_score is None else min_score,
            mode=mode or settings.retrieval,
        )


def search_index(
    index: RepositoryIndex,
    vector: list[float],
    query: str,
    *,
    top_k: int,
    entity_types: Sequence[str],
    mmr: bool,
    min_score: float,
    mode: RetrievalMode,
    rrf_k: int = RRF_K,
) -> list[Source]:
    """`search` on an index as it is, with the query's vector already computed (hold
    `index.searching()` while a sync may run)."""
    assert index.store is not None, "sync() before searching"
    docs, chunks_of = index.store.docs, index.chunks_of

    def known(entity_id: str) -> bool:
        return entity_id in chunks_of

    def owner_type(owner: str) -> str:
        return str(docs[chunks_of[owner][0]].metadata["entityType"])

    allowed = set(entity_types)

    def wanted(document: Document) -> bool:
        names, _ = owners(document.metadata, known)
        return any(owner_type(name) in allowed for name in names)

    keep = wanted if allowed else None
    k = max(1, min(top_k, MAX_TOP_K))
    limit = max(CANDIDATES, k * 8)
    dense = [
        (i, 1.0) for i, _, score in index.dense(vector, limit * VIEWS, keep) if score >= min_score
    ]
    rankings = [dense]
    best = 1.0
    if mode == "hybrid":
        hits = index.lexical_hits(query, limit * (4 if allowed else 1))
        lexical = [i for i, _ in hits if keep is None or keep(docs[i])][:limit]
        shares = index.lexical_shares(query, lexical)
        rankings.append([(i, shares[i] ** 2) for i in lexical])
        best += max(shares.values(), default=0.0) ** 2
    groups = fuse(rankings, docs, known, rrf_k)
    if allowed:
        groups = [g for g in groups if owner_type(g.owner) in allowed]
    if mmr:
        groups = _diversify(index, vector, groups, k)
    named = [n for n in index.names.named_in(query) if not allowed or owner_type(n) in allowed]
    groups = named_first(groups, named, best / (rrf_k + 1))
    return [
        _source(g, owner_type(g.owner), g.score * (rrf_k + 1) / best, docs, chunks_of, query)
        for g in groups[:k]
    ]


def named_first(groups: list[Group], named: list[str], score: float) -> list[Group]:
    """The entities the question names exactly first, in its order, with the best score (one
    the searches did not find is added); then the rest as ranked."""
    if not named:
        return groups
    found = {g.owner: g for g in groups}
    first = [found.get(owner) or Group(owner) for owner in named]
    for group in first:
        group.score = score
    chosen = set(named)
    return first + [g for g in groups if g.owner not in chosen]


def _representative(g: Group, chunks_of: dict[str, list[int]]) -> int:
    return g.own if g.own is not None else chunks_of[g.owner][0]


def _diversify(
    index: RepositoryIndex,
    query: list[float],
    groups: list[Group],
    k: int,
    lambda_mult: float = 0.5,
) -> list[Group]:
    """Maximal marginal relevance over the best 4 × k groups. The first is the best group, as
    without MMR; each next one is the group whose closeness to the query (its chunk nearest
    to it) least its cosine to the closest group already chosen (by their representative
    chunks) is highest, weighed `lambda_mult` to 1 - it."""
    import numpy as np

    from context_kit_service.retrieval.store import normalise

    assert index.store is not None
    candidates = groups[: k * 4]
    if not candidates:
        return []
    store, chunks_of = index.store, index.chunks_of
    target = normalise(query)[0]
    relevance = np.array([(store.vectors(chunks_of[g.owner]) @ target).max() for g in candidates])
    vectors = store.vectors([_representative(g, chunks_of) for g in candidates])  # normalised
    chosen = [0]
    closest = vectors @ vectors[0]
    while len(chosen) < min(k, len(candidates)):
        marginal = lambda_mult * relevance - (1 - lambda_mult) * closest
        marginal[chosen] = -np.inf
        pick = int(np.argmax(marginal))
        chosen.append(pick)
        closest = np.maximum(closest, vectors @ vectors[pick])
    return [candidates[i] for i in chosen]


def _source(
    g: Group,
    entity_type: str,
    relevance: float,
    docs: dict[int, Document],
    chunks_of: dict[str, list[int]],
    query: str,
) -> Source:
    own = docs[_representative(g, chunks_of)]
    support = list(g.support.items())[:MAX_SUPPORT]
    return Source(
        entity_id=g.owner,
        entity_type=entity_type,
        title=own.metadata["title"],
        relevance_score=round(max(0.0, min(1.0, relevance)), 4),
        excerpt=excerpt(own.page_content, query, heading=entity_type != "document"),
        file_path=own.metadata["filePath"],
        supporting=[
            Support(file_path=path, excerpt=excerpt(docs[chunk].page_content, query))
            for path, chunk in support
        ],
    )


def index_stale(settings: Settings, root: Path, embeddings: Embeddings | None = None) -> str | None:
    """Why the repository's index serves an older generation (its last sync failed), or None."""
    return repository_index(settings, root, embeddings)[0].stale


async def search_repository(
    settings: Settings, root: Path, query: str, **options: Any
) -> list[Source]:
    """`search` in a worker thread (it embeds the query and may rebuild the index)."""
    return await asyncio.to_thread(partial(search, settings, root, query, **options))
