"""LangChain tools over a context repository, their registry, and path confinement."""
