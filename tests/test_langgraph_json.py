"""`langgraph.json` names every served graph, each a checkpointer-free compiled graph."""

from __future__ import annotations

import importlib.util
import json
import sys

from langgraph.pregel import Pregel

from context_kit_service.server.served import SPECS
from tests.conftest import REPO_ROOT


def test_every_served_graph_is_listed_and_loads_without_a_checkpointer() -> None:
    config = json.loads((REPO_ROOT / "langgraph.json").read_text())
    assert set(config["graphs"]) == {graph.name for graph in SPECS}
    for name, target in config["graphs"].items():
        path, attribute = target.split(":")
        spec = importlib.util.spec_from_file_location(f"studio_{name}", REPO_ROOT / path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # postponed annotations resolve through sys.modules
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[spec.name]
        graph = getattr(module, attribute)
        assert isinstance(graph, Pregel), name
        assert graph.checkpointer is None, name
        assert graph.name == name
