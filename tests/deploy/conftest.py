"""Fixtures for the deployment-artifact tests (no Docker engine and no cluster needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES: dict[str, dict[str, int | str]] = {
    "presence": {"prefix": "PRESENCE_", "grpc": 7061, "metrics": 9461},
    "routing": {"prefix": "ROUTING_", "grpc": 7062, "metrics": 9462},
    "contacts": {"prefix": "CONTACTS_", "grpc": 7063, "metrics": 9463},
    "replies": {"prefix": "REPLIES_", "grpc": 7064, "metrics": 9464},
}
#: kustomize from the Go module proxy, built once into the git-ignored .tools/bin.
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def kustomize() -> Path:
    """Path of a kustomize binary: ``$KUSTOMIZE``, ``.tools/bin/kustomize`` or built with Go."""
    if explicit := os.environ.get("KUSTOMIZE"):
        return Path(explicit)
    bin_dir = REPO / ".tools" / "bin"
    binary = bin_dir / "kustomize"
    stamp = bin_dir / "kustomize.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == KUSTOMIZE_VERSION:
        return binary
    go = shutil.which("go")
    if go is None:
        pytest.skip("kustomize needs Go to build (go install from the module proxy)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        env={**os.environ, "GOBIN": str(bin_dir), "CGO_ENABLED": "0"},
        check=True,
        timeout=540,
    )
    stamp.write_text(KUSTOMIZE_VERSION + "\n")
    return binary


@pytest.fixture(scope="session")
def services() -> dict[str, dict[str, int | str]]:
    """Service name → env prefix and default gRPC/metrics ports (the documented defaults)."""
    return SERVICES


#: promtool ships in Debian's `prometheus` package (a static Go binary). `apt-get download` +
#: `dpkg-deb -x` unpack it into the git-ignored .tools/ without installing or starting anything
#: (~19 MB, seconds); building promtool from the Go module proxy takes many minutes on 2 cores.
PROMTOOL_DIR = REPO / ".tools" / "prometheus"


def _unpack_promtool() -> Path | None:
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        return None
    downloads = REPO / ".tools" / "debs"
    downloads.mkdir(parents=True, exist_ok=True)

    def download() -> bool:
        done = subprocess.run(
            [apt, "download", "prometheus"], cwd=downloads, capture_output=True, timeout=300
        )
        return done.returncode == 0

    if not download():
        if os.geteuid() != 0:
            return None
        subprocess.run([apt, "update"], capture_output=True, timeout=300, check=True)
        if not download():
            return None
    (deb,) = sorted(downloads.glob("prometheus_*.deb"))[-1:]
    subprocess.run([dpkg, "-x", str(deb), str(PROMTOOL_DIR)], check=True, timeout=120)
    deb.unlink()
    binary = PROMTOOL_DIR / "usr" / "bin" / "promtool"
    return binary if binary.exists() else None


@pytest.fixture(scope="session")
def promtool() -> Path:
    """``$PROMTOOL``, ``promtool`` on PATH, or Debian's, unpacked into .tools/prometheus."""
    if explicit := os.environ.get("PROMTOOL"):
        return Path(explicit)
    if found := shutil.which("promtool"):
        return Path(found)
    binary = PROMTOOL_DIR / "usr" / "bin" / "promtool"
    if binary.exists():
        return binary
    unpacked = _unpack_promtool()
    if unpacked is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is needed in CI: Debian's prometheus package could not be had")
        pytest.skip("promtool unavailable (no apt-get): set PROMTOOL=/path/to/promtool")
    return unpacked
