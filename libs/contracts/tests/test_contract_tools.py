"""The ecosystem's own checkers on our contracts: the AsyncAPI parser, buf lint, buf breaking.

They are npm packages pinned in tools/node/package-lock.json and installed by ``make setup``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE_TOOLS = ROOT / "tools" / "node"
BUF = NODE_TOOLS / "node_modules" / ".bin" / "buf"
#: The protos of the last release (see CHANGELOG.md, "Releasing").
RELEASED_PROTOS = ROOT / "libs" / "contracts" / "released" / "1.1.0" / "proto"


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if not (NODE_TOOLS / "node_modules").is_dir():
        pytest.fail("the contract checkers are not installed: run `make setup`")
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_asyncapi_document_passes_the_official_parser() -> None:
    result = _run("node", NODE_TOOLS / "validate-asyncapi.mjs", ROOT / "docs" / "asyncapi.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID:" in result.stdout


def test_buf_lint_is_clean() -> None:
    result = _run(BUF, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_are_compatible_with_the_last_release() -> None:
    result = _run(BUF, "breaking", "--against", RELEASED_PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_renumbered_field(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    routing = tmp_path / "proto" / "inbox" / "routing" / "v1" / "routing.proto"
    text = routing.read_text()
    assert "string assignee_id = 3;" in text
    routing.write_text(text.replace("string assignee_id = 3;", "string assignee_id = 30;"))
    result = _run(BUF, "breaking", "--against", RELEASED_PROTOS, cwd=tmp_path)
    assert result.returncode != 0
    assert "assignee_id" in result.stdout + result.stderr
