"""Every prompt the graphs send, as named constants filled at call time.

They are written so a small *base* model (the packaged default) can continue them: plain
text with labelled sections, the answer's opening left for the model to complete.
"""

RAG_SYSTEM = """You answer questions about a software project using only passages from its \
context repository. Each passage starts with its id in brackets. Answer in one to three \
sentences using only the passages, and cite the id of every passage you use in brackets, like \
[FEAT-001]. If the passages do not answer the question, say that the repository does not say."""

RAG_QUESTION = """Passages:
{context}

Question: {question}"""

# One worked exchange, shown before the real question (few-shot).
RAG_EXAMPLE_QUESTION = RAG_QUESTION.format(
    context="[T-900] (task) Rotate the signing keys\nstatus: done\n"
    "steps: replace the signing keys every 90 days",
    question="How often are the signing keys rotated?",
)
RAG_EXAMPLE_ANSWER = "The signing keys are replaced every 90 days [T-900]."

RAG_PASSAGE = "[{entity_id}] ({entity_type}) {title}\n{excerpt}"

RAG_NOTHING_FOUND = (
    "The repository has nothing relevant to this question, so I cannot answer it from the "
    "project's context."
)
