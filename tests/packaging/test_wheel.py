"""The built wheel installs one top-level package (plus the console script), and works from a fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools writes build/ and *.egg-info/ beside the sources, and this checkout stays clean
    source = tmp_path_factory.mktemp("source") / "ollama-conformance"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", "ollama-conformance-runs"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = out.glob("ollama_conformance-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the wheel installed; its dependencies are borrowed from this venv by a path entry."""
    root = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    purelib = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    # a plain path line: the borrowed folder's own .pth files (our editable install's finder) are not run
    (purelib / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def test_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ollama_conformance"}
    for part in ("spec", "conformance", "load", "reports", "fixtures", "reference_backend"):
        assert f"ollama_conformance/{part}/__init__.py" in names, part
    # data files travel with their packages
    assert "ollama_conformance/spec/native.yaml" in names
    assert "ollama_conformance/reference_backend/store/templates/gemma3.gotmpl" in names
    assert any(n.startswith("ollama_conformance/fixtures/web_corpus/") and n.endswith(".md") for n in names)


def _isolated_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_fresh_venv_sees_only_the_namespace(fresh_venv: Path, tmp_path: Path) -> None:
    purelib = Path(subprocess.check_output([str(fresh_venv / "bin" / "python"), "-c",
                                            "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    installed = {p.name for p in purelib.iterdir()} - {"zz_borrowed_dependencies.pth", "__pycache__"}
    assert {n for n in installed if not n.endswith(".dist-info")} == {"ollama_conformance"}, installed
    probe = ("import importlib.util, ollama_conformance.spec as s; "
             "print(s.__file__); "
             "print([m for m in ('spec', 'conformance', 'load', 'reports', 'fixtures', 'reference_backend') "
             "if importlib.util.find_spec(m)])")
    out = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=_isolated_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    spec_file, stray = out.stdout.splitlines()
    assert spec_file.startswith(str(purelib)), spec_file  # the wheel's copy, not this checkout
    assert stray == "[]"


def test_run_works_from_the_fresh_venv(fresh_venv: Path, tmp_path: Path) -> None:
    """`ollama-conformance run` from the wheel: the reference backend starts, a few features are checked, reports land."""
    script = fresh_venv / "bin" / "ollama-conformance"
    assert subprocess.run([str(script), "run", "--help"], cwd=tmp_path, env=_isolated_env(), capture_output=True,
                          timeout=120).returncode == 0
    out = tmp_path / "run"
    done = subprocess.run([str(script), "run", "--skip-bench", "--no-history", "--feature", "server.*",
                           "--out", str(out)],
                          cwd=tmp_path, env=_isolated_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    for name in ("check.json", "junit.xml", "report.md", "report.html", "summary.json", "badge.svg"):
        assert (out / name).is_file(), name
