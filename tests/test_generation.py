"""Entity generation: the graph with a scripted model, the REST contract, save with approval."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from context_kit_service.configuration import MODEL_KEY, SETTINGS_KEY
from context_kit_service.graphs.generation import graph
from context_kit_service.repository import load_repository
from context_kit_service.server import create_app
from tests.conftest import SAMPLE_REPO
from tests.contract import ERROR_BODY, assert_contract, assert_no_nulls
from tests.fakes import ScriptedChatModel, replies

GOOD_TASK = {
    "title": "Add an index on budget lines",
    "status": "todo",
    "steps": ["Write the migration"],
}


async def generate(model: ScriptedChatModel, settings: Any, **request: Any) -> dict[str, Any]:
    request.setdefault("repo_path", str(SAMPLE_REPO))
    config = {"configurable": {SETTINGS_KEY: settings, MODEL_KEY: model}}
    return await graph.ainvoke(request, config)


async def test_an_invalid_first_draft_is_repaired(make_settings) -> None:
    model = replies({**GOOD_TASK, "status": "started"}, GOOD_TASK)
    out = await generate(
        model,
        make_settings(),
        entity_type="task",
        user_prompt="Speed up the remaining view",
        linked_feature_id="FEAT-003",
    )
    assert out["status"] == "completed"
    assert (out["attempts"], out["valid"], out["problems"]) == (2, True, [])
    assert out["entity"] == {
        "id": "T-011",
        "title": "Add an index on budget lines",
        "status": "todo",
        "steps": ["Write the migration"],
        "related": {"feature": "FEAT-003"},
    }
    assert out["yaml"] == (
        "id: T-011\ntitle: Add an index on budget lines\nstatus: todo\nsteps:\n  - Write the migration\n"
        "related:\n  feature: FEAT-003\n"
    )
    assert (out["prompt_tokens"], out["completion_tokens"]) == (200, 40)
    repair = model.prompts[1][-1].content
    assert repair == (
        "That task is not valid: status: 'started' is not one of ['todo', 'doing', 'done', "
        "'blocked', 'needs-review']\nReply with the corrected JSON object only."
    )
    assert (
        model.prompts[1][-2].content
        == '{"title": "Add an index on budget lines", "status": "started", "steps": ["Write the migration"]}'
    )


async def test_worked_examples_show_the_format_shortened_whatever_the_request(
    make_settings,
) -> None:
    shown = []
    for prompt in ("Speed up the remaining view", "Let a user recover a lost passkey"):
        model = replies(GOOD_TASK)
        await generate(model, make_settings(), entity_type="task", user_prompt=prompt)
        shown.append([m.content for m in model.prompts[0][1:5]])
    assert shown[0] == shown[1]
    assert [json.loads(answer) for answer in shown[0][1::2]] == [
        {
            "title": "Implement passkey registration endpoints",
            "status": "done",
            "owner": "ana.ruiz",
            "steps": [  # three in T-001
                "Generate registration options with a random challenge",
                "Verify attestation with ledgerly-auth",
            ],
            "doneCriteria": ["Integration test covers Chrome and Safari authenticators"],
        },
        {
            "title": "Build the e-mail recovery flow",
            "status": "done",
            "owner": "ana.ruiz",
            "steps": [
                "Send a signed, single-use recovery link",
                "Allow registering a new passkey after recovery",
            ],
            "doneCriteria": ["Links expire after 15 minutes"],
        },
    ]


def test_example_texts_keep_their_first_words_and_lists_their_first_items() -> None:
    from context_kit_service.graphs.generation import shortened

    value = {
        "objective": "Users split one expense between several members. Each pays a share.",
        "criteria": ["one", "two", "three"],
        "points": 3,
        "nested": {"note": "a b c d e f g h i j"},
    }
    assert shortened(value) == {
        "objective": "Users split one expense between several members.",
        "criteria": ["one", "two"],
        "points": 3,
        "nested": {"note": "a b c d e f g h"},
    }


async def test_a_draft_that_never_validates_ends_after_the_bound(make_settings) -> None:
    model = replies({"title": "x"}, "not json at all", {"title": "y", "status": "later"})
    out = await generate(
        model,
        make_settings(),
        entity_type="task",
        user_prompt="A task that cannot be written",
        max_attempts=3,
    )
    assert (out["status"], out["attempts"], out["valid"]) == ("invalid", 3, False)
    assert out["error"] == (
        "could not write a valid task in 3 attempts: status: 'later' is not one of "
        "['todo', 'doing', 'done', 'blocked', 'needs-review']; title: 'y' is too short"
    )
    assert len(model.prompts) == 3
    assert model.prompts[2][-1].content.startswith(
        "That task is not valid: the reply was not a JSON object"
    )


@pytest.mark.parametrize(
    ("entity_type", "draft", "link"),
    [
        (
            "userstory",
            {"asA": "planner", "iWant": "to split a transaction", "soThat": "budgets stay right"},
            {"feature": "FEAT-003"},
        ),
        ("task", GOOD_TASK, {"related": {"feature": "FEAT-003"}}),
        (
            "spec",
            {"title": "Split transactions API", "type": "api"},
            {"related": {"features": ["FEAT-003"]}},
        ),
    ],
)
async def test_the_linked_feature_goes_to_the_types_link_field(
    make_settings, entity_type: str, draft: dict[str, Any], link: dict[str, Any]
) -> None:
    out = await generate(
        replies(draft),
        make_settings(),
        entity_type=entity_type,
        user_prompt="Split one transaction across categories",
        linked_feature_id="FEAT-003",
    )
    assert out["valid"] is True
    assert {k: v for k, v in out["entity"].items() if k in link} == link
    assert next(iter(out["entity"])) == "id"


@pytest.mark.parametrize(
    ("entity_type", "draft", "expected_id"),
    [
        ("feature", {"title": "Multi-currency accounts", "status": "proposed"}, "FEAT-009"),
        ("service", {"name": "fx-rates", "type": "backend"}, "SVC-006"),
        ("package", {"name": "fx-lib", "version": "0.1.0", "type": "pypi"}, "PKG-005"),
        (
            "governance",
            {
                "name": "Data charter",
                "version": "0.1.0",
                "status": "draft",
                "ratifiedOn": "2026-11-01",
                "principles": ["Keep it small"],
                "governance": {"owners": ["ana"], "reviewCadence": "yearly"},
                "compliance": {"rules": []},
            },
            "CONST-002",
        ),
    ],
)
async def test_ids_come_from_the_repository(
    make_settings, entity_type: str, draft: dict[str, Any], expected_id: str
) -> None:
    smuggled = await generate(
        replies({**draft, "id": "X-1"}, draft),
        make_settings(),
        entity_type=entity_type,
        user_prompt="Something new for the project",
    )
    assert smuggled["entity"]["id"] == expected_id  # the model never chooses the id
    clean = await generate(
        replies(draft),
        make_settings(),
        entity_type=entity_type,
        user_prompt="Something new for the project",
    )
    assert (clean["status"], clean["entity"]["id"]) == ("completed", expected_id)


async def test_ids_continue_after_the_highest_existing_one(make_settings, tmp_path: Path) -> None:
    tasks = tmp_path / "contexts" / "tasks"
    tasks.mkdir(parents=True)
    for number in (1, 7):
        (tasks / f"T-00{number}.yaml").write_text(
            f"id: T-00{number}\ntitle: Task {number}\nstatus: todo\n"
        )
    out = await generate(
        replies(GOOD_TASK),
        make_settings(),
        entity_type="task",
        user_prompt="One more task please",
        repo_path=str(tmp_path),
    )
    assert out["entity"]["id"] == "T-008"


async def test_a_missing_linked_feature_is_an_error(make_settings) -> None:
    model = replies(GOOD_TASK)
    out = await generate(
        model,
        make_settings(),
        entity_type="task",
        user_prompt="Link me to nothing",
        linked_feature_id="FEAT-099",
    )
    assert (out["status"], out["error"]) == (
        "error",
        "linked_feature_id FEAT-099 is not a feature of the repository",
    )
    assert model.prompts == []


@pytest.fixture
def client_with(make_settings) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(model: ScriptedChatModel, **settings: Any) -> TestClient:
        client = TestClient(
            create_app(make_settings(repo_path=SAMPLE_REPO, **settings), chat_model=model)
        )
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


GENERATE_RESPONSE_KEYS = {"entity", "entityType", "yaml", "validation", "metadata"}


def test_generate_entity_contract(client_with) -> None:
    client = client_with(
        replies(
            {"asA": "planner", "iWant": "to split a transaction", "soThat": "budgets stay right"},
            input_tokens=321,
            output_tokens=45,
        )
    )
    response = client.post(
        "/ai/generate-entity",
        json={
            "entityType": "userstory",
            "userPrompt": "Split one transaction across two categories",
            "linkedFeatureId": "FEAT-003",
        },
    )
    body = response.json()
    assert response.status_code == 200
    assert_no_nulls(body)
    assert set(body) == GENERATE_RESPONSE_KEYS
    assert body["entity"] == {
        "id": "US-013",
        "feature": "FEAT-003",
        "asA": "planner",
        "iWant": "to split a transaction",
        "soThat": "budgets stay right",
        "type": "userstory",
    }
    assert body["entityType"] == "userstory"
    assert body["validation"] == {"valid": True, "errors": [], "unchecked": []}
    metadata = body["metadata"]
    assert (
        metadata["promptTokens"],
        metadata["completionTokens"],
        metadata["attempts"],
        metadata["status"],
    ) == (321, 45, 1, "completed")
    assert metadata["durationMs"] > 0
    assert (metadata["model"], metadata["provider"]) == ("qwen2.5-coder-0.5b", "local")


def test_a_short_user_prompt_is_a_422(client_with) -> None:
    client = client_with(replies(GOOD_TASK))
    response = client.post(
        "/ai/generate-entity", json={"entityType": "task", "userPrompt": "  fix  it   "}
    )
    assert response.status_code == 422
    assert_contract(response.json(), ERROR_BODY)
    assert (
        response.json()["message"]
        == "invalid request: userPrompt: Value error, userPrompt needs at least 10 non-blank characters"
    )


def test_an_entity_that_never_validates_is_a_422_with_the_problems(client_with) -> None:
    client = client_with(
        replies(
            {"title": "x", "status": "todo"},
            {"title": "y", "status": "todo"},
            {"title": "z", "status": "todo"},
        )
    )
    response = client.post(
        "/ai/generate-entity", json={"entityType": "task", "userPrompt": "A task that is too short"}
    )
    assert response.status_code == 422
    body = response.json()
    assert (body["code"], body["message"]) == (
        "ENTITY_INVALID",
        "could not write a valid task in 3 attempts: title: 'z' is too short",
    )
    assert body["details"] == {
        "problems": ["title: 'z' is too short"],
        "entity": {"id": "T-011", "title": "z", "status": "todo"},
    }


def test_saving_needs_approval_and_links_the_feature(client_with, sample_copy: Path) -> None:
    story = {"asA": "planner", "iWant": "to split a transaction", "soThat": "budgets stay right"}
    client = client_with(replies(story, story))
    request = {
        "entityType": "userstory",
        "userPrompt": "Split one transaction across two categories",
        "linkedFeatureId": "FEAT-003",
        "repoPath": str(sample_copy),
        "save": True,
    }
    pending = client.post("/ai/generate-entity", json=request).json()
    assert pending["metadata"]["status"] == "pending_approval"
    assert pending["approvalRequest"]["tool"] == "create_entity"
    assert not list((sample_copy / "contexts/userstories").glob("US-013*"))
    saved = client.post(
        "/ai/generate-entity",
        json={
            **request,
            "threadId": pending["metadata"]["threadId"],
            "approval": {"approved": True},
        },
    ).json()
    assert (
        saved["metadata"]["savedPath"] == "contexts/userstories/US-013-to-split-a-transaction.yaml"
    )
    repo = load_repository(sample_copy)
    assert repo.entities["US-013"].data == {"id": "US-013", **{"feature": "FEAT-003"}, **story}
    assert repo.entities["FEAT-003"].data["userStories"] == ["US-006", "US-007", "US-013"]
    assert repo.validate()["valid"] is True

    rejected_pending = client.post("/ai/generate-entity", json=request).json()
    rejected = client.post(
        "/ai/generate-entity",
        json={
            **request,
            "threadId": rejected_pending["metadata"]["threadId"],
            "approval": {"approved": False},
        },
    ).json()
    assert rejected["metadata"]["status"] == "rejected"
    assert (
        sorted(p.name[:6] for p in (sample_copy / "contexts/userstories").iterdir())[-1] == "US-013"
    )


def test_langserve_batch_generates_several_entities(client_with) -> None:
    client = client_with(
        replies(
            {"name": "fx-rates", "type": "backend"},
            {"name": "fx-cache", "type": "infrastructure"},
        )
    )
    response = client.post(
        "/graphs/generate/batch",
        json={
            "inputs": [
                {"entity_type": "service", "user_prompt": "A currency conversion service"},
                {"entity_type": "service", "user_prompt": "Another currency conversion service"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    outputs = response.json()["output"]
    assert [(o["status"], o["entity"]["id"]) for o in outputs] == [
        ("completed", "SVC-006"),
        ("completed", "SVC-006"),
    ]
    assert sorted(o["entity"]["name"] for o in outputs) == ["fx-cache", "fx-rates"]


GOOD_STORY = {"asA": "member", "iWant": "to export my budget", "soThat": "I can share it"}


def test_with_no_repository_known_a_draft_is_checked_against_the_built_in_schema(
    make_settings,
) -> None:
    """The app's generate-entity request: no repoPath, and the service names no repository."""
    model = replies(GOOD_STORY)
    with TestClient(create_app(make_settings(), chat_model=model)) as client:
        body = {
            "entityType": "userstory",
            "userPrompt": "Members export their budget as CSV",
            "linkedFeatureId": "FEAT-777",  # the app may send ids no repository checks
        }
        response = client.post("/ai/generate-entity", json=body)
        saving = client.post("/ai/generate-entity", json={**body, "save": True})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["entity"] == {
        "id": "US-001",
        "feature": "FEAT-777",
        **GOOD_STORY,
        "type": "userstory",
    }
    assert out["validation"] == {"valid": True, "errors": [], "unchecked": []}
    metadata = out["metadata"]
    assert "repository" not in metadata  # no repository was used
    assert (metadata["linkedFeatureId"], metadata["linkedBy"]) == ("FEAT-777", "request")
    assert (saving.status_code, saving.json()["message"]) == (
        422,
        "saving needs a repository: send repoPath or set CKS_REPO_PATH",
    )


def test_a_story_without_a_feature_links_to_the_best_match(make_settings) -> None:
    model = replies(GOOD_STORY)
    settings = make_settings(repo_path=SAMPLE_REPO)
    with TestClient(create_app(settings, chat_model=model)) as client:
        body = {"entityType": "userstory", "userPrompt": "Sign in with a passkey on my phone"}
        out = client.post("/ai/generate-entity", json=body).json()
    assert (out["metadata"]["linkedFeatureId"], out["metadata"]["linkedBy"]) == (
        "FEAT-001",
        "retrieval",
    )
    assert out["entity"]["feature"] == "FEAT-001"
    assert out["metadata"]["repository"] == str(SAMPLE_REPO)
    assert out["validation"]["valid"] is True


def test_a_story_with_no_feature_to_link_to_is_refused_before_the_model(
    make_settings, tmp_path: Path
) -> None:
    repo = tmp_path / "empty-repo"
    (repo / "contexts").mkdir(parents=True)
    model = replies(GOOD_STORY)
    with TestClient(create_app(make_settings(), chat_model=model)) as client:
        body = {"entityType": "userstory", "userPrompt": "Export budgets", "repoPath": str(repo)}
        response = client.post("/ai/generate-entity", json=body)
    assert (response.status_code, response.json()["message"]) == (
        422,
        "a userstory belongs to a feature and the repository has none: create a feature first "
        "or send linkedFeatureId",  # the wire's name for the field
    )
    assert model.prompts == []


def test_rest_errors_name_fields_as_the_wire_does(make_settings) -> None:
    model = replies(GOOD_TASK)
    with TestClient(create_app(make_settings(repo_path=SAMPLE_REPO), chat_model=model)) as client:
        body = {"entityType": "task", "userPrompt": "Link me to nothing", "linkedFeatureId": "F-9"}
        response = client.post("/ai/generate-entity", json=body)
    assert (response.status_code, response.json()["message"]) == (
        422,
        "linkedFeatureId F-9 is not a feature of the repository",
    )
