"""The `ollama` and `openai` npm packages, driven by node (js/probe.cjs). The packages install on demand into a
cache folder outside the repository ($OLLAMA_CONFORMANCE_NPM_CACHE, default ~/.cache/ollama-conformance/npm).
Without node or npm, or when the install fails, these clients are *not applicable* with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ollama_conformance.conformance.client_probes.model import ClientResult, ScenarioResult

PROBE = Path(__file__).resolve().parent / "js" / "probe.cjs"
JS_PACKAGES = {"ollama-js": "ollama", "openai-js": "openai"}
NODE = "/usr/bin/node"


def cache_dir() -> Path:
    configured = os.environ.get("OLLAMA_CONFORMANCE_NPM_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "ollama-conformance" / "npm"


def find_node() -> str | None:
    return shutil.which("node") or (NODE if Path(NODE).is_file() else None)


def ensure_package(package: str, folder: Path, timeout_s: float = 300.0) -> str:
    """Install `package` into folder/node_modules unless it is there; '' on success, else why not."""
    if (folder / "node_modules" / package / "package.json").is_file():
        return ""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.is_file():  # without one npm would climb to a parent folder's package.json
        manifest.write_text('{"name": "ollama-conformance-client-probes", "private": true}\n', encoding="utf-8")
    try:
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", package], cwd=folder,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"npm install {package} did not finish within {timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split())[-200:]
        return f"npm install {package} failed ({tail})"
    return ""


def run_js_client(name: str, url: str, model: str, embed_model: str | None, timeout_s: float = 900.0) -> ClientResult:
    node = find_node()
    if node is None:
        return ClientResult(name, "javascript", None, "not_applicable", "node is not installed")
    folder = cache_dir()
    problem = ensure_package(JS_PACKAGES[name], folder)
    if problem:
        return ClientResult(name, "javascript", None, "not_applicable", problem)
    cmd = [node, str(PROBE), name, str(folder / "node_modules"), url.rstrip("/"), model, embed_model or ""]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ClientResult(name, "javascript", None, "error", f"the node probe did not finish within {timeout_s:.0f} s")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = " ".join(proc.stderr.split())[-300:] or f"exit {proc.returncode}, no output"
        return ClientResult(name, "javascript", None, "error", f"the node probe broke: {why}")
    scenarios = [ScenarioResult(s["name"], s["status"], s.get("step", ""), s.get("exception", "")) for s in data["scenarios"]]
    return ClientResult(name, "javascript", data.get("version"), "ran", scenarios=scenarios)
