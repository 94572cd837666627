"""The install is locked: uv.lock matches pyproject.toml, this environment holds exactly the locked
versions, and a fresh environment built from the lock alone starts the app."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv not found: `make venv` installs it into .tools/"
    return found


def _locked_versions() -> dict[str, set[str]]:
    """Package -> its locked versions (several where Python-version markers split the resolution)."""
    versions: dict[str, set[str]] = {}
    for p in tomllib.loads(LOCK.read_text())["package"]:
        if "registry" in p.get("source", {}):
            versions.setdefault(canonicalize_name(p["name"]), set()).add(p["version"])
    return versions


def test_lock_matches_pyproject():
    result = subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_lock_holds_a_scheduler_safe_prefect_and_patched_libraries():
    locked = _locked_versions()
    major_minor = lambda v: tuple(int(x) for x in v.split(".")[:3])  # noqa: E731
    assert min(map(major_minor, locked["prefect"])) >= (3, 9, 1)  # 3.8.x's scheduler fails on SQLAlchemy 2.1
    assert min(map(major_minor, locked["jinja2"])) >= (3, 1, 6)  # sandbox escape fixes
    assert "fastapi" in locked  # Prefect's own pin, resolved
    for sha_less in (
        p for p in tomllib.loads(LOCK.read_text())["package"] if "registry" in p.get("source", {})
    ):
        artifacts = sha_less.get("wheels", []) + ([sha_less["sdist"]] if "sdist" in sha_less else [])
        assert artifacts and all(a.get("hash", "").startswith("sha256:") for a in artifacts), sha_less["name"]


def test_this_environment_is_the_lock():
    """Every locked package that is installed here has exactly the locked version."""
    locked = _locked_versions()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (installed[n], v) for n, v in locked.items() if n in installed and installed[n] not in v}
    assert not wrong, f"installed != locked: {wrong}"
    for needed in ("prefect", "sqlalchemy", "great-expectations", "pandas", "jinja2", "sendgrid", "pytest"):
        assert needed in installed, needed


@pytest.mark.integration
def test_a_fresh_environment_from_the_lock_starts_the_app(tmp_path: Path):
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"), "SHOPMAIL_DATA_DIR": str(tmp_path)}
    sync = subprocess.run(
        [_uv(), "sync", "--locked", "--python", "python3", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sync.returncode == 0, sync.stderr
    app = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "shopmail"), "campaigns"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert app.returncode == 0, app.stderr
    assert "birthday" in app.stdout and "order_shipped" in app.stdout
    check = subprocess.run(
        [_uv(), "pip", "check", "--python", str(tmp_path / "venv" / "bin" / "python")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
