"""Run the selected client probes against a target and merge them into a check results file (`clients`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ollama_conformance.conformance.client_probes.js_clients import JS_PACKAGES, run_js_client
from ollama_conformance.conformance.client_probes.model import CLIENTS, ClientResult
from ollama_conformance.conformance.client_probes.python_clients import PYTHON_CLIENTS, run_python_client
from ollama_conformance.errors import UsageError


def parse_clients(value: str) -> list[str]:
    """`all`, `none`/'' or a comma-separated list of CLIENTS; a name we do not know is a usage error."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or names == ["none"]:
        return []
    if names == ["all"]:
        return list(CLIENTS)
    unknown = [n for n in names if n not in CLIENTS]
    if unknown:
        raise UsageError(f"unknown client(s) {', '.join(unknown)} (known: {', '.join(CLIENTS)}, all)")
    return names


def run_clients(names: list[str], url: str, model: str, embed_model: str | None) -> list[ClientResult]:
    results = []
    for name in names:
        if name in PYTHON_CLIENTS:
            results.append(run_python_client(name, url, model, embed_model))
        elif name in JS_PACKAGES:
            results.append(run_js_client(name, url, model, embed_model))
    return results


def models_of(results: dict[str, Any]) -> tuple[str | None, str | None]:
    """The completion and embedding models the check used (its target's model list, by capability)."""
    models = (results.get("target") or {}).get("models") or []
    chat = next((m["name"] for m in models if "completion" in (m.get("capabilities") or [])), None)
    embed = next((m["name"] for m in models if "embedding" in (m.get("capabilities") or [])), None)
    return chat, embed


def merge_into(path: Path, clients: list[ClientResult]) -> None:
    """Add the `clients` section to a written check results file (validated by the writer before it is saved)."""
    from ollama_conformance.conformance.results import write_results

    data = json.loads(path.read_text(encoding="utf-8"))
    data["clients"] = [c.to_json() for c in clients]
    write_results(path, data)


def validate_args(args: Any) -> None:
    """Before the suite runs: the client names are known and there is a --target to probe afterwards."""
    if parse_clients(args.clients) and not args.target:
        raise UsageError("--clients needs --target URL (the bundled backend started by check is gone by then)")


def run_after_check(args: Any, code: int) -> int:
    """`check --clients LIST`: the probes against --target after the suite; into --json; a failed scenario fails
    the gate like a failed MUST test (the official clients are the judge of compatible)."""
    from ollama_conformance.conformance.differential import discover_models

    names = parse_clients(args.clients)
    if not args.target:
        raise UsageError("--clients needs --target URL (the bundled backend started by check is gone by then)")
    model, embed = args.model, args.embed_model
    path = Path(args.json).resolve() if getattr(args, "json", None) else None
    if path is not None and path.is_file() and (model is None or embed is None):
        found_model, found_embed = models_of(json.loads(path.read_text(encoding="utf-8")))
        model, embed = model or found_model, embed or found_embed
    if model is None or embed is None:
        import httpx

        with httpx.Client(base_url=args.target.rstrip("/"), timeout=30.0) as client:
            found_model, found_embed = discover_models(client)
        model, embed = model or found_model, embed or found_embed
    if model is None:
        print("clients: not run (no completion model found: pass --model)")
        return code
    results = run_clients(names, args.target, model, embed)
    for result in results:
        print(f"clients: {result.summary()}")
        for scenario in result.scenarios:
            if scenario.status != "pass":
                print(f"  {scenario.name}: {scenario.step}: {scenario.exception}")
    if path is not None and path.is_file():
        merge_into(path, results)
    failed = any(s.status != "pass" for r in results for s in r.scenarios) or any(r.state == "error" for r in results)
    return max(code, 1) if failed and getattr(args, "gate", "MUST") != "none" else code
