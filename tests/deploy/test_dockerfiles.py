"""The Dockerfiles (the services' one, built with ``--build-arg SERVICE=<name>``, and the
console's): linted with hadolint, checked for the essentials, and their lock-file install
steps replayed without a Docker engine."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

NAMES = ["presence", "routing", "contacts", "replies"]
#: Every image: the four gRPC services and the console edge (HTTP; its own essentials test).
IMAGES = [*NAMES, "console"]
#: The services' Dockerfile (one, ``ARG SERVICE``) and the console's.
SERVICES_DOCKERFILE = "Dockerfile"
CONSOLE_DOCKERFILE = "services/console/Dockerfile"


def dockerfile_of(name: str) -> str:
    return CONSOLE_DOCKERFILE if name == "console" else SERVICES_DOCKERFILE


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(path: Path, service: str | None = None) -> list[list[Instruction]]:
    """Instructions of a Dockerfile grouped by build stage (continuations joined), with
    ``${SERVICE}`` replaced by ``service`` (the build argument)."""
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if service is not None:
            logical = logical.replace("${SERVICE}", service)
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(args.split()))
        logical = ""
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def workspace_members(repo: Path) -> list[str]:
    root = tomllib.loads((repo / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += sorted(
            str(p.parent.relative_to(repo)) for p in repo.glob(f"{pattern}/pyproject.toml")
        )
    return members


@pytest.mark.parametrize("path", [SERVICES_DOCKERFILE, CONSOLE_DOCKERFILE])
def test_hadolint_passes(repo: Path, path: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(repo / path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_serves_every_service(repo: Path) -> None:
    assert sorted(p.parent.name for p in repo.glob("services/*/Dockerfile")) == ["console"]


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_essentials(
    repo: Path, services: dict[str, dict[str, int | str]], name: str
) -> None:
    stages = parse(repo / SERVICES_DOCKERFILE, name)
    build_stages = [s for s in stages if s[0].args.split()[0] != "${UV_IMAGE}"]
    assert len(build_stages) >= 2, "multi-stage: a build stage and a slim runtime stage"
    runtime = stages[-1]
    text = (repo / SERVICES_DOCKERFILE).read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert runtime[0].args.startswith("${PYTHON_IMAGE}")
    assert all(any(i.args == "SERVICE" for i in s if i.keyword == "ARG") for s in build_stages)

    runs = " ".join(i.args for s in stages for i in s if i.keyword == "RUN")
    assert f"uv sync --locked --no-dev --no-editable --package inbox-{name}" in runs
    # The runtime stage gets only the virtualenv and the entry point, never sources or uv.
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert [c for c in copies if "--from=build" in c and "/app/.venv" in c]
    assert [c.split()[-2] for c in copies if "--from=" not in c] == ["deploy/image/entrypoint.sh"]

    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "runtime stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"0", "root"}

    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert f"INBOX_SERVICE={name}" in env
    healthchecks = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and '["/app/entrypoint", "healthcheck"]' in healthchecks[0]
    assert [i.args for i in runtime if i.keyword == "ENTRYPOINT"][-1] == '["/app/entrypoint"]'
    scripts = tomllib.loads((repo / "services" / name / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert f"inbox-{name}" in scripts


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_binds_the_documented_ports_unless_told_otherwise(
    repo: Path, tmp_path: Path, services: dict[str, dict[str, int | str]], name: str
) -> None:
    """The image's entry point, run with a stand-in console script that prints its env."""
    cfg = services[name]
    prefix = str(cfg["prefix"])
    script = tmp_path / f"inbox-{name}"
    script.write_text("#!/bin/sh\nenv\n")
    script.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "INBOX_SERVICE": name}

    def run(**extra: str) -> dict[str, str]:
        result = subprocess.run(
            ["sh", str(repo / "deploy" / "image" / "entrypoint.sh")],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)

    defaults = run()
    assert defaults[f"{prefix}GRPC_HOST"] == "0.0.0.0"
    assert defaults[f"{prefix}GRPC_PORT"] == str(cfg["grpc"])
    assert defaults[f"{prefix}METRICS_PORT"] == str(cfg["metrics"])
    assert run(**{f"{prefix}GRPC_PORT": "1234"})[f"{prefix}GRPC_PORT"] == "1234"
    unknown = subprocess.run(
        ["sh", str(repo / "deploy" / "image" / "entrypoint.sh")],
        env={**env, "INBOX_SERVICE": "nothing"},
        capture_output=True,
        timeout=30,
    )
    assert unknown.returncode == 64


@pytest.mark.parametrize("name", IMAGES)
def test_every_workspace_member_manifest_is_copied(repo: Path, name: str) -> None:
    """uv checks the lock against all members: a member added later must be copied too."""
    copied = {
        i.args.split()[0]
        for s in parse(repo / dockerfile_of(name), name)
        for i in s
        if i.keyword == "COPY"
    }
    for member in workspace_members(repo):
        assert f"{member}/pyproject.toml" in copied, f"{member} missing from {dockerfile_of(name)}"


def test_dockerignore_keeps_local_state_out(repo: Path) -> None:
    patterns = [
        line.strip()
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".git", ".venv", ".devstack", ".tools", "**/tests", "**/__pycache__"):
        assert must in patterns
    for needed in ("uv.lock", "pyproject.toml", "libs/kit/src/inbox_kit/__init__.py"):
        assert not _ignored(needed, patterns), needed
    assert "!deploy/image/entrypoint.sh" in patterns  # the one file of deploy/ the image needs


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.removeprefix("**/"))
        for pat in patterns
        for prefix in prefixes
    )


def test_console_dockerfile_essentials(repo: Path) -> None:
    stages = parse(repo / CONSOLE_DOCKERFILE)
    text = (repo / CONSOLE_DOCKERFILE).read_text()
    runtime = stages[-1]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    assert runtime[0].args.startswith("${PYTHON_IMAGE}")
    web = next(s for s in stages if " AS web" in s[0].args)
    assert any(i.keyword == "RUN" and "npm ci" in i.args for i in web)
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert {c.split()[0] for c in copies} <= {"--from=build", "--from=web"}
    assert any("/app/.venv" in c for c in copies) and any("/web/dist" in c for c in copies)
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    # never the development login in an image
    assert "CONSOLE_DEV_MODE=false" in env and "CONSOLE_HTTP_HOST=0.0.0.0" in env
    healthchecks = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    assert [i.args for i in runtime if i.keyword == "CMD"][-1] == '["inbox-console"]'


@pytest.mark.parametrize("name", IMAGES)
def test_build_stage_replays_without_docker(repo: Path, tmp_path: Path, name: str) -> None:
    """Replay the build stage's COPY and ``uv sync`` steps in a scratch context: the locked,
    non-editable install works and yields a self-contained venv with the console script."""
    patterns = [
        line.strip()
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    stages = parse(repo / dockerfile_of(name), name)
    build = next(s for s in stages if " AS build" in s[0].args)
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env.update(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON=sys._base_executable,  # the same 3.11 the workspace runs on
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    uv = shutil.which("uv") or str(repo / ".tools" / "venv" / "bin" / "uv")
    for instruction in build:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            *sources, dest = instruction.args.split()
            for source in sources:
                target = context / (dest if dest not in {"./", "."} else source)
                _copy(repo / source, target, repo, patterns)
        elif instruction.keyword == "RUN" and "uv sync" in instruction.args:
            command = instruction.args[instruction.args.index("uv sync") :]
            result = subprocess.run(
                [uv, *command.split()[1:]],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, result.stderr[-3000:]
    assert (venv / "bin" / f"inbox-{name}").exists()
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import {name}_service, grpc_health.v1.health_pb2, inbox_kit, inbox_contracts; "
            f"print({name}_service.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    # Installed into the venv (not an editable link back into the source tree).
    assert probe.stdout.strip().startswith(str(venv))
    # Test-only workspace members stay out of the image.
    assert not list((venv / "lib").glob("python*/site-packages/inbox_testing"))


def _copy(source: Path, target: Path, repo: Path, patterns: list[str]) -> None:
    if _ignored(str(source.relative_to(repo)), patterns):
        return
    if source.is_dir():
        for child in source.iterdir():
            _copy(child, target / child.name, repo, patterns)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
