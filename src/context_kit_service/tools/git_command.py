"""Running `git` on a repository that is input, not code.

A repository's `.git` arrives with it (a clone, a copied folder), so nothing in it may make
git run a command or read outside the repository. Each call:

- gets a closed environment (`ENVIRONMENT`), not the service's: no system or user config,
  no system attributes, no prompts, no pager, no inherited `GIT_*` variable;
- pins the git dir and the work tree to the repository (`GIT_DIR`, `GIT_WORK_TREE`,
  `GIT_CEILING_DIRECTORIES`); a `.git` file or a `core.worktree` that leads elsewhere, a
  `commondir` or object alternates outside the repository are refused (`GitRefused`);
- overrides every setting by which a repository's config names a command (`COMMAND_SETTINGS`,
  and each filter, diff and merge driver the config defines, emptied: git then runs none),
  through `GIT_CONFIG_*` variables, which outrank the repository's config.
  Diffs are asked for with `--no-ext-diff --no-textconv` besides.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from langchain_core.tools import ToolException

GIT_TIMEOUT_S = 20

COMMAND_SETTINGS = {
    "core.fsmonitor": "false",
    "core.hooksPath": "/dev/null",
    "core.pager": "cat",
    "core.editor": "false",
    "core.askPass": "",
    "core.sshCommand": "false",
    "core.gitProxy": "",
    "core.attributesFile": "/dev/null",
    "core.alternateRefsCommand": "",
    "core.untrackedCache": "false",
    "credential.helper": "",
    "diff.external": "",
    "sequence.editor": "false",
    "gpg.program": "false",
    "protocol.allow": "never",
    "uploadpack.packObjectsHook": "",
    "gc.auto": "0",
    "maintenance.auto": "false",
    "fetch.recurseSubmodules": "false",
    "submodule.recurse": "false",
}
"""Settings through which git's config names a program to run, each set to run none."""

DRIVER_KEYS = {
    "filter": ("clean", "smudge", "process"),
    "diff": ("command", "textconv"),
    "merge": ("driver",),
}
"""Per-driver settings that name a command (`filter.<name>.clean`, ...): emptied for every
driver the repository's config defines, since `.gitattributes` can select any of them."""


class GitRefused(ToolException):
    """A checkout whose git metadata leads outside the repository."""


def _environment(root: Path, git_dir: Path, settings: dict[str, str]) -> dict[str, str]:
    """The closed environment of a git call, `settings` given as `GIT_CONFIG_*` variables
    (any driver name is a valid key there, unlike in `-c`). HOME is the git dir, so a `~/`
    in the repository's config names nothing of the user's."""
    numbered = {}
    for index, (key, value) in enumerate(settings.items()):
        numbered[f"GIT_CONFIG_KEY_{index}"] = key
        numbered[f"GIT_CONFIG_VALUE_{index}"] = value
    return {
        **numbered,
        "GIT_CONFIG_COUNT": str(len(settings)),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(git_dir),
        "LC_ALL": "C",
        "GIT_DIR": str(git_dir),
        "GIT_WORK_TREE": str(root),
        "GIT_CEILING_DIRECTORIES": str(root.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "",
    }


def _inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or resolved.is_relative_to(root)


def git_dir(root: Path) -> Path:
    """The git dir of the checkout at `root`, which must lie inside it; GitRefused otherwise."""
    dot_git = root / ".git"
    if dot_git.is_file() and not dot_git.is_symlink():
        first = dot_git.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
        if not first.startswith("gitdir:"):
            raise GitRefused(".git is a file that names no git dir")
        linked = Path(first.removeprefix("gitdir:").strip())
        dot_git = linked if linked.is_absolute() else root / linked
        if not _inside(dot_git, root):
            raise GitRefused(".git links to a git dir outside the repository; refused")
    elif dot_git.is_symlink() and not _inside(dot_git, root):
        raise GitRefused(".git links to a git dir outside the repository; refused")
    if not dot_git.is_dir():
        raise ToolException("the repository is not a git checkout (git init it first)")
    resolved = dot_git.resolve()
    for part in ("objects", "refs", "commondir"):
        if (resolved / part).exists() and not _inside(resolved / part, root):
            raise GitRefused(f".git/{part} leads outside the repository; refused")
    for name in ("alternates", "http-alternates"):
        if (resolved / "objects" / "info" / name).exists():
            raise GitRefused(f".git/objects/info/{name} borrows objects from elsewhere; refused")
    return resolved


def _run(root: Path, gdir: Path, settings: dict[str, str], args: tuple[str, ...]) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=_environment(root, gdir, settings),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ToolException("git is not installed on the machine running the service") from None
    except subprocess.TimeoutExpired:
        raise ToolException(f"git {args[0]} took longer than {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ToolException(f"git {args[0]} failed: {done.stderr.strip()[:500]}")
    return done.stdout


def _overrides(root: Path, gdir: Path) -> dict[str, str]:
    """The fixed command settings and every driver the config defines, emptied; GitRefused
    when the config moves the work tree outside the repository."""
    listed = _run(root, gdir, COMMAND_SETTINGS, ("config", "--list", "--includes", "-z"))
    drivers: set[tuple[str, str]] = set()
    for entry in listed.split("\0"):
        key, _, value = entry.partition("\n")
        section, _, rest = key.partition(".")
        name, _, _ = rest.rpartition(".")
        if section.lower() == "core" and rest.lower() == "worktree":
            worktree = Path(value) if Path(value).is_absolute() else gdir / value
            if worktree.resolve() != root:
                raise GitRefused("core.worktree points outside the repository; refused")
        if section.lower() in DRIVER_KEYS and name:
            drivers.add((section.lower(), name))
    settings = dict(COMMAND_SETTINGS)
    for section, name in sorted(drivers):
        settings |= {f"{section}.{name}.{key}": "" for key in DRIVER_KEYS[section]}
        if section == "filter":
            settings[f"filter.{name}.required"] = "false"
    return settings


def git(root: Path, *args: str) -> str:
    """The output of `git args...` on the checkout at `root`, run so that nothing in the
    repository can make git run a command or reach outside it; ToolException when git fails."""
    root = root.resolve()
    gdir = git_dir(root)
    return _run(root, gdir, _overrides(root, gdir), args)
