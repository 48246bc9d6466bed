"""Retrieval: repository documents, embeddings and a persistent, incremental FAISS index."""
