"""LangGraph graphs, one module each: nodes, then routers, then the builder."""
