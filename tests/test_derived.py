"""Which Markdown documents are derived from entities, and which entities their sections
restate (`repository.derived`, `retrieval.documents`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from context_kit_service.repository.derived import (
    GeneratedRules,
    mentioned_ids,
    named_ids,
    split_front_matter,
)
from context_kit_service.repository.model import load_repository
from context_kit_service.retrieval.documents import document_chunks


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root, "contexts/features/FEAT-001-a.yaml", "id: FEAT-001\ntitle: Alpha\nstatus: done\n")
    write(root, "contexts/tasks/T-002-b.yaml", "id: T-002\ntitle: Beta\nstatus: todo\n")
    return root


def test_ids_are_named_by_file_name_front_matter_or_first_heading() -> None:
    assert named_ids("prompts/FEAT-001-alpha.prompt.md", "# Prompt\n\nSee T-009.") == ("FEAT-001",)
    front = "---\nentity: SPEC-003\nalso: [T-004, {deep: US-005}]\n---\n# Notes on T-006\n"
    assert named_ids("docs/notes.md", front) == ("SPEC-003", "T-004", "US-005", "T-006")
    assert named_ids("docs/a.md", "intro\n\n## T-001 first heading of any level\n") == ("T-001",)
    # Ids further down the body do not make a document derived.
    assert named_ids("docs/guide.md", "# Guide\n\nFEAT-001 and T-002 are mentioned.") == ()


def test_ids_look_like_prefix_dash_number() -> None:
    assert mentioned_ids("FEAT-001, T-7, CONST-001; not feat-1, X-1a, ABC-, UTF-8x") == [
        "FEAT-001",
        "T-7",
        "CONST-001",
    ]


def test_front_matter_is_read_within_bounds_or_ignored() -> None:
    bomb = "---\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    assert split_front_matter(bomb + "---\n# Body\n") == ({}, "# Body\n")
    assert split_front_matter("---\n[unclosed\n---\nbody") == ({}, "body")
    assert split_front_matter("no front matter\n---\n") == ({}, "no front matter\n---\n")


def test_generated_folders_and_ignore_patterns() -> None:
    rules = GeneratedRules.from_texts(["# comment\ncontexts/*/README.md\n", "/build/\n*.out.md\n"])
    assert rules.generated("generated/checklists/x.md")
    assert rules.generated("docs/generated/x.md")
    assert rules.generated("contexts/features/README.md")
    assert rules.generated("build/bundle.md")
    assert rules.generated("docs/report.out.md")
    assert not rules.generated("README.md")
    assert not rules.generated("docs/build/notes.md")  # /build/ is anchored at the root
    assert not rules.generated("docs/generated.md")
    assert not GeneratedRules.from_texts(["# only comments\n\n"]).generated("docs/a.md")


def test_loading_marks_documents_by_every_rule(repo: Path) -> None:
    write(repo, ".contextignore", "contexts/*/README.md\n")
    write(repo, ".gitignore", "exports/\n")
    write(repo, "prompts/FEAT-001-alpha.prompt.md", "# Prompt\n\nBuild alpha.")
    write(repo, "generated/checklist.md", "# T-002 Beta: checklist\n\n- [ ] done")
    write(repo, "exports/bundle.md", "# Bundle\n\nEverything.")
    write(repo, "contexts/features/README.md", "# Features\n\n## FEAT-001 Alpha\n\nAlpha text.")
    write(repo, "docs/guide.md", "# Guide\n\nFEAT-001 is explained here.")
    documents = {d.path: (d.names, d.generated, d.derived) for d in load_repository(repo).documents}
    assert documents == {
        "contexts/features/README.md": ((), True, True),
        "docs/guide.md": ((), False, False),
        "exports/bundle.md": ((), True, True),
        "generated/checklist.md": (("T-002",), True, True),
        "prompts/FEAT-001-alpha.prompt.md": (("FEAT-001",), False, True),
    }


def test_a_derived_section_restates_the_ids_its_heading_names(repo: Path) -> None:
    write(repo, ".contextignore", "contexts/*/README.md\n")
    write(
        repo,
        "contexts/features/README.md",
        "# Features\n\nAn index.\n\n## FEAT-001 Alpha\n\nAlpha text.\n\n## T-002 Beta\n\nBeta.",
    )
    write(repo, "prompts/FEAT-001.prompt.md", "# Prompt\n\nIntro.\n\n## Goal\n\nShip alpha.")
    write(repo, "docs/guide.md", "# Guide\n\n## FEAT-001 in practice\n\nNot derived.")
    documents = {d.path: d for d in load_repository(repo).documents}

    def restated(path: str) -> list[tuple[str, list[str], bool]]:
        return [
            (c.page_content.split("\n")[-1], c.metadata["restates"], c.metadata["derived"])
            for c in document_chunks(documents[path])
        ]

    assert restated("contexts/features/README.md") == [
        ("An index.", [], True),
        ("Alpha text.", ["FEAT-001"], True),
        ("Beta.", ["T-002"], True),
    ]
    assert restated("prompts/FEAT-001.prompt.md") == [
        ("Intro.", ["FEAT-001"], True),
        ("Ship alpha.", ["FEAT-001"], True),
    ]
    assert restated("docs/guide.md") == [("Not derived.", [], False)]


def test_an_unreadable_ignore_file_is_a_load_problem(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").write_text("*.md\n")
    (repo / ".gitignore").symlink_to(tmp_path / "outside")
    write(repo, "docs/guide.md", "# Guide\n")
    loaded = load_repository(repo)
    assert [p.as_dict() for p in loaded.load_problems] == [
        {"file": ".gitignore", "message": "file not read: it links outside the repository"}
    ]
    assert [(d.path, d.generated) for d in loaded.documents] == [("docs/guide.md", False)]
