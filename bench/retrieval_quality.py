"""Retrieval quality without the chat model: recall@5 and MRR of hybrid and dense-only search
on the question sets, per category, for several reciprocal rank fusion constants.

Each question is embedded once; every (mode, constant) pair then searches the same vectors,
so the sweep takes seconds. The service's constant is `RRF_K` in `retrieval/search.py`.

    .venv/bin/python bench/retrieval_quality.py [--rrf-k 1,5,20,60] [--explained]

`--explained` indexes the entities with the explanations `index --explain` stored in the data
dir (CKS_DATA_DIR); the index itself is built in a temporary folder either way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from context_kit_service.evaluation.metrics import mean, recall_at_k, reciprocal_rank
from context_kit_service.providers import embeddings_spec, get_embeddings
from context_kit_service.retrieval import explanations
from context_kit_service.retrieval.index import RepositoryIndex, embeddings_model_id
from context_kit_service.retrieval.search import RRF_K, search_index
from context_kit_service.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("rag.jsonl", "rag_dev.jsonl", "rag_hard.jsonl")
DEFAULT_REPO = "examples/context-repo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rrf-k", default=f"1,{RRF_K},20,60", help="constants to compare")
    parser.add_argument(
        "--explained", action="store_true", help="with the stored entity explanations"
    )
    args = parser.parse_args()
    constants = sorted({int(k) for k in args.rrf_k.split(",")})

    settings = load_settings()
    spec = embeddings_spec(settings)
    embeddings = get_embeddings(spec)
    indexes: dict[str, RepositoryIndex] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        if args.explained:
            stored = explanations.store_path(settings.data_dir)
            shutil.copyfile(stored, explanations.store_path(Path(data_dir)))
        for dataset in DATASETS:
            examples = [
                json.loads(line)
                for line in (ROOT / "evals/datasets" / dataset).read_text().splitlines()
            ]
            scores: dict[tuple[str, int, str], list[tuple[float, float]]] = defaultdict(list)
            for example in examples:
                repo = example.get("repo", DEFAULT_REPO)
                if repo not in indexes:
                    index = RepositoryIndex(
                        (ROOT / repo).resolve(),
                        Path(data_dir),
                        embeddings,
                        embeddings_model_id(spec),
                    )
                    index.ensure_fresh()
                    indexes[repo] = index
                vector = embeddings.embed_query(example["question"])
                for mode in ("hybrid", "dense"):
                    for k in constants if mode == "hybrid" else [RRF_K]:
                        found = search_index(
                            indexes[repo],
                            vector,
                            example["question"],
                            top_k=5,
                            entity_types=(),
                            mmr=False,
                            min_score=settings.min_relevance,
                            mode=mode,
                            rrf_k=k,
                        )
                        ids = [s.entity_id for s in found]
                        pair = (
                            recall_at_k(ids, example["relevant"], 5),
                            reciprocal_rank(ids, example["relevant"]),
                        )
                        for category in ("all", example.get("category", "")):
                            if category:
                                scores[(mode, k, category)].append(pair)
            categories = sorted({c for _, _, c in scores if c != "all"})
            print(f"\n{dataset} ({len(examples)} questions)")
            header = ["mode", "rrf_k", "recall@5", "MRR"]
            header += [f"{metric}[{c}]" for metric in ("recall@5", "MRR") for c in categories]
            print(" | ".join(header))
            for (mode, k, category), pairs in sorted(scores.items()):
                if category != "all":
                    continue
                row = [mode, str(k), *(f"{mean([p[i] for p in pairs]):.3f}" for i in (0, 1))]
                for i in (0, 1):
                    for c in categories:
                        row.append(f"{mean([p[i] for p in scores[(mode, k, c)]]):.3f}")
                print(" | ".join(row))


if __name__ == "__main__":
    main()
