"""Retrieval quality over the sample repository: recall@5 and MRR of the question set.

    .venv/bin/python evals/retrieval_quality.py [--k 5]

Uses the configured embeddings (the packaged MiniLM by default) and a throwaway index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from context_kit_service.evaluation.metrics import mean, recall_at_k, reciprocal_rank
from context_kit_service.graphs.retrieval import search_repository
from context_kit_service.settings import load_settings

HERE = Path(__file__).parent
SAMPLE = HERE.parent / "examples" / "context-repo"


async def evaluate(k: int, data_dir: Path) -> dict[str, float]:
    settings = load_settings(data_dir=data_dir)
    lines = (HERE / "datasets" / "rag.jsonl").read_text().splitlines()
    examples = [json.loads(line) for line in lines]
    recalls, ranks = [], []
    for example in examples:
        sources = await search_repository(
            settings, SAMPLE, example["question"], top_k=k, min_score=0
        )
        ids = [s.entity_id for s in sources]
        recalls.append(recall_at_k(ids, example["relevant"], k))
        ranks.append(reciprocal_rank(ids, example["relevant"]))
        if recalls[-1] < 1:
            print(f"  missed {example['id']}: {example['question']} -> {ids}")
    return {"examples": len(examples), f"recall@{k}": mean(recalls), "mrr": mean(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        result = asyncio.run(evaluate(args.k, Path(data_dir)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
