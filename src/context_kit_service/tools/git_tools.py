"""Read-only git over the repository (`git_command.git`: fixed argument lists, never a shell,
nothing the repository configures is run), and the draft of a pull request: a local branch
and a summary, written after approval, never pushed."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException, tool
from pydantic import Field

from context_kit_service.configuration import service_settings
from context_kit_service.repository.files import data_name
from context_kit_service.tools.git_command import git
from context_kit_service.tools.repository_tools import RepoRoot

MAX_DIFF_CHARS = 200_000
DIFF = ("diff", "--no-color", "--no-ext-diff", "--no-textconv")


def _relative(path: str) -> str:
    if path.startswith(("/", "~", "-")) or ".." in PurePosixPath(path).parts or "\x00" in path:
        raise ToolException(f"path must be relative to the repository, without '..': {path}")
    return path


@tool
def git_status(repo_root: RepoRoot, include_diff: bool = False) -> dict[str, Any]:
    """The repository's git status: `staged`, `unstaged` and `untracked` paths (and with
    `include_diff` the diff of the working tree against HEAD)."""
    root = Path(repo_root)
    out = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    staged, unstaged, untracked = [], [], []
    entries = iter(out.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # the rename's source path
        if code == "??":
            untracked.append(path)
            continue
        if code[0] != " ":
            staged.append(path)
        if code[1] != " ":
            unstaged.append(path)
    result: dict[str, Any] = {"staged": staged, "unstaged": unstaged, "untracked": untracked}
    if include_diff:
        result["diff"] = git(root, *DIFF, "HEAD")[:MAX_DIFF_CHARS]
    return result


@tool
def git_diff(repo_root: RepoRoot, path: str | None = None) -> dict[str, Any]:
    """The diff of the working tree against HEAD as text, for the whole repository or one
    repository-relative `path`."""
    args = [*DIFF, "HEAD", "--"]
    if path:
        args.append(_relative(path))
    diff = git(Path(repo_root), *args)
    return {"path": path, "diff": diff[:MAX_DIFF_CHARS], "truncated": len(diff) > MAX_DIFF_CHARS}


def _branch_name(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50].strip("-")
    return f"draft/{slug or 'change'}"


@tool
def git_prepare_pr(
    repo_root: RepoRoot,
    config: RunnableConfig,
    title: Annotated[str, Field(min_length=1, max_length=200)],
    description: Annotated[str, Field(max_length=20_000)] = "",
    reviewers: Annotated[list[str], Field(max_length=20)] = [],  # noqa: B006 - a schema default
) -> dict[str, Any]:
    """Prepare a pull request as a draft: a local branch at the current commit and a summary
    file (title, description, reviewers, changed files). Never pushes or switches branches.
    Needs the user's approval."""
    root = Path(repo_root)
    branch = _branch_name(title)
    git(root, "check-ref-format", "--branch", branch)
    if git(root, "branch", "--list", branch).strip():
        raise ToolException(f"branch {branch} exists already; choose another title")
    changed = git_status.invoke({"repo_root": repo_root})
    git(root, "branch", branch)
    folder = service_settings(config).data_dir / "pull-requests" / data_name(root)
    folder.mkdir(parents=True, exist_ok=True)
    summary = folder / f"{branch.removeprefix('draft/')}.md"
    files = sorted({*changed["staged"], *changed["unstaged"], *changed["untracked"]})
    lines = [f"# {title}", "", description, "", "Reviewers: " + (", ".join(reviewers) or "-")]
    lines += ["", "Changed files:", *[f"- {f}" for f in files]]
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "branch": branch,
        "summaryPath": str(summary),
        "instructions": f"Commit your changes on {branch} (git switch {branch}), then push it "
        f"(git push -u origin {branch}) and open the pull request with the summary.",
    }
