"""`POST /ai/rag/query` and `/graphs/rag` with a scripted chat model and real retrieval."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.contract import ERROR_BODY, RAG_QUERY_RESPONSE, assert_contract
from tests.fake_providers import closed_port_url


class ScriptedModel(GenericFakeChatModel):
    """Answers from a script and remembers the prompts it was given."""

    prompts: list[Any]

    def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(messages)
        return super()._generate(messages, *args, **kwargs)


def scripted(*answers: str) -> ScriptedModel:
    return ScriptedModel(messages=iter([AIMessage(a) for a in answers]), prompts=[])


@pytest.fixture
def rag_client(make_settings) -> Iterator[tuple[TestClient, ScriptedModel]]:
    model = scripted("Recovery links expire after 15 minutes [T-002] [US-002] [FEAT-999].")
    with TestClient(create_app(make_settings(repo_path=SAMPLE_REPO), chat_model=model)) as client:
        yield client, model


def test_answer_with_sources_and_timings(rag_client: tuple[TestClient, ScriptedModel]) -> None:
    client, model = rag_client
    response = client.post(
        "/ai/rag/query", json={"query": "How long is a recovery link valid?", "topK": 3}
    )
    body = response.json()
    assert response.status_code == 200
    assert_contract(body, RAG_QUERY_RESPONSE)
    assert body["answer"] == "Recovery links expire after 15 minutes [T-002] [US-002] [FEAT-999]."
    assert [s["entityId"] for s in body["sources"]] == ["US-002", "T-002", "FEAT-001"]
    assert body["sources"][0]["filePath"] == (
        "contexts/userstories/US-002-to-recover-my-account-through-my-verified-e-mail.yaml"
    )
    assert body["sources"][0]["excerpt"] == (  # the fields sharing words with the question
        "feature: FEAT-001 iWant: to recover my account through my verified e-mail "
        "acceptanceCriteria: - The recovery link expires after 15 minutes - Old passkeys can be "
        "revoked after recovery"
    )
    assert body["sources"][0]["supporting"] == []
    metadata = body["metadata"]
    assert set(metadata) == {
        "retrievalTimeMs",
        "generationTimeMs",
        "totalSources",
        "topK",
        "model",
        "indexStale",
    }
    assert metadata["indexStale"] is False
    assert (metadata["totalSources"], metadata["topK"]) == (3, 3)
    assert metadata["retrievalTimeMs"] > 0
    assert metadata["generationTimeMs"] > 0
    prompt = model.prompts[0][-1].content
    assert prompt.startswith(
        "Passages:\n[US-002] (userstory) to recover my account through my verified e-mail\n"
    )
    assert prompt.endswith("Question: How long is a recovery link valid?")


def test_langserve_route_reports_cited_ids_within_the_retrieved_ones(make_settings) -> None:
    model = scripted("It runs on PostgreSQL [SVC-005], see [NOT-RETRIEVED].")
    with TestClient(create_app(make_settings(repo_path=SAMPLE_REPO), chat_model=model)) as client:
        response = client.post(
            "/graphs/rag/invoke",
            json={"input": {"query": "Which database does the platform run on?", "top_k": 2}},
        )
    output = response.json()["output"]
    assert output["cited_ids"] == ["SVC-005"]
    assert next(s["entity_id"] for s in output["sources"]) == "SVC-005"
    assert set(output) == {
        "answer",
        "sources",
        "cited_ids",
        "retrieval_ms",
        "generation_ms",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "index_stale",
    }
    assert output["index_stale"] is None


def test_nothing_relevant_says_so_without_calling_the_model(
    rag_client: tuple[TestClient, ScriptedModel],
) -> None:
    client, model = rag_client
    response = client.post("/ai/rag/query", json={"query": "banana bread recipe with walnuts"})
    body = response.json()
    assert_contract(body, RAG_QUERY_RESPONSE)
    assert body == {
        "answer": "The repository has nothing relevant to this question, so I cannot answer it "
        "from the project's context.",
        "sources": [],
        "metadata": {
            "retrievalTimeMs": body["metadata"]["retrievalTimeMs"],
            "generationTimeMs": 0.0,
            "totalSources": 0,
            "topK": 5,
            "indexStale": False,
        },
    }
    assert model.prompts == []


def test_a_large_top_k_is_clamped_and_reported(
    rag_client: tuple[TestClient, ScriptedModel],
) -> None:
    client, _ = rag_client
    body = client.post("/ai/rag/query", json={"query": "passkey recovery", "topK": 50}).json()
    assert body["metadata"]["topK"] == 20
    assert 0 < body["metadata"]["totalSources"] == len(body["sources"]) <= 20


def test_entity_type_filter(rag_client: tuple[TestClient, ScriptedModel]) -> None:
    client, _ = rag_client
    body = client.post(
        "/ai/rag/query", json={"query": "passkey recovery", "entityTypes": ["userstory"], "topK": 2}
    ).json()
    assert [(s["entityId"], s["entityType"]) for s in body["sources"]] == [
        ("US-002", "userstory"),
        ("US-001", "userstory"),
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"query": "   "}, "query", "Value error, query must not be blank"),
        ({"query": "x", "topK": 0}, "topK", "Input should be greater than 0"),
        ({"query": "x", "entityTypes": ["epic"]}, "entityTypes.0", "Input should be 'feature',"),
        (
            {"query": "x", "config": {"provider": "local", "temperature": 3}},
            "config.temperature",
            "Input should be less than or equal to 2",
        ),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    rag_client, body: dict[str, Any], field: str, message: str
) -> None:
    client, _ = rag_client
    response = client.post("/ai/rag/query", json=body)
    assert response.status_code == 422
    assert_contract(response.json(), ERROR_BODY)
    detail = response.json()["details"][0]
    assert detail["field"] == field
    assert detail["message"].startswith(message)


def test_a_blank_query_on_the_langserve_route_is_a_422_not_a_500(rag_client) -> None:
    client, model = rag_client
    response = client.post("/graphs/rag/invoke", json={"input": {"question": "wrong field"}})
    assert response.status_code == 422
    assert response.json() == {
        "error": "Unprocessable Entity",
        "message": "invalid request: query: Field required",  # the schema says it is required
        "type": "client_error",
        "code": "VALIDATION_ERROR",
        "details": [{"field": "query", "message": "Field required"}],
    }
    assert model.prompts == []


def test_a_too_long_query_is_refused(make_settings) -> None:
    with TestClient(create_app(make_settings(repo_path=SAMPLE_REPO, max_input_chars=20))) as client:
        response = client.post("/ai/rag/query", json={"query": "a question that is far too long"})
    assert (response.status_code, response.json()["code"]) == (422, "INPUT_TOO_LONG")
    assert response.json()["message"] == "query is longer than 20 characters (CKS_MAX_INPUT_CHARS)"


def test_a_provider_that_is_down_gives_a_coded_error(make_settings) -> None:
    settings = make_settings(repo_path=SAMPLE_REPO, provider="ollama", base_url=closed_port_url())
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/ai/rag/query", json={"query": "How long is a recovery link valid?"}
        )
    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "message": "cannot reach the ollama provider; is it running and is the endpoint right?",
        "type": "server_error",
        "code": "PROVIDER_UNAVAILABLE",
    }


def test_a_client_endpoint_is_refused_unless_allowed(
    rag_client: tuple[TestClient, ScriptedModel],
) -> None:
    client, _ = rag_client
    response = client.post(
        "/ai/rag/query",
        json={
            "query": "recovery link",
            "config": {"provider": "ollama", "endpoint": "http://169.254.169.254"},
        },
    )
    assert (response.status_code, response.json()["code"]) == (403, "ENDPOINT_NOT_ALLOWED")
