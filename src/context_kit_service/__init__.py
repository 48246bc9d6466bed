"""context-kit-service: the LangGraph AI sidecar of the context-kit desktop app."""

__version__ = "0.1.0"
