"""`ollama-conformance spec`: print the spec's coverage (routes x methods x statuses x media types, features)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

HELP = "print the spec's coverage: routes x methods x statuses x media types per surface, and features by level"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the coverage as JSON")
    parser.add_argument(
        "--surface",
        action="append",
        metavar="SURFACE",
        help="only this surface (native, openai, anthropic); repeatable",
    )
    parser.add_argument(
        "--since",
        metavar="VERSION",
        help="list what changed in Ollama after VERSION (x-ollama-since / x-ollama-until), instead of the coverage",
    )


def coverage(surfaces: list[str] | None = None) -> dict[str, Any]:
    """The coverage as data: every operation with its statuses and their media types, and the feature counts."""
    from ollama_conformance import spec

    wanted = surfaces or list(spec.SURFACES)
    unknown = [s for s in wanted if s not in spec.SURFACES]
    if unknown:
        from ollama_conformance.errors import UsageError

        raise UsageError(f"unknown surface {unknown[0]!r}; choose from {', '.join(spec.SURFACES)}")
    out: dict[str, Any] = {"spec_version": spec.SPEC_VERSION, "surfaces": {}, "totals": {}, "features": {}}
    totals: Counter[str] = Counter()
    for surface in wanted:
        ops = [op for op in spec.operations() if op.surface == surface]
        rows = []
        for op in ops:
            statuses = {}
            for status in spec.declared_statuses(op.method, op.path):
                statuses[status] = spec.response_media_types(op.method, op.path, status)
            rows.append(
                {
                    "method": op.method,
                    "path": op.path,
                    "operation_id": op.operation_id,
                    "streaming": op.streaming,
                    "cloud_only": op.cloud_only,
                    "request_media_types": _request_media_types(surface, op.method, op.path),
                    "statuses": statuses,
                }
            )
        counts = {
            "routes": len({op.path for op in ops}),
            "operations": len(ops),
            "statuses": sum(len(r["statuses"]) for r in rows),
            "status_media_types": sum(max(1, len(m)) for r in rows for m in r["statuses"].values()),
        }
        totals.update(counts)
        out["surfaces"][surface] = {"counts": counts, "operations": rows}
    out["totals"] = dict(totals)
    feats = [f for f in spec.features().values() if surfaces is None or f.surface in wanted or f.surface == "cloud"]
    out["features"] = {
        "total": len(feats),
        "by_level": {level: sum(1 for f in feats if f.level == level) for level in ("MUST", "SHOULD", "MAY")},
        "by_surface": dict(Counter(f.surface for f in feats)),
        "by_capability": dict(Counter(f.capability or "none" for f in feats)),
    }
    return out


def _request_media_types(surface: str, method: str, path: str) -> list[str]:
    from ollama_conformance import spec

    op = spec.document(surface)["paths"][path][method.lower()]
    return list((op.get("requestBody") or {}).get("content", {}))


def _print_text(data: dict[str, Any]) -> None:
    print(f"Ollama API spec, describing Ollama {data['spec_version']}")
    for surface, block in data["surfaces"].items():
        c = block["counts"]
        print(
            f"\n[{surface}] {c['routes']} routes, {c['operations']} operations, {c['statuses']} statuses, "
            f"{c['status_media_types']} status x media type pairs"
        )
        for row in block["operations"]:
            flags = "".join([" stream" if row["streaming"] else "", " cloud-only" if row["cloud_only"] else ""])
            print(f"  {row['method']:<6} {row['path']}{flags}")
            for status, media in row["statuses"].items():
                print(f"         {status}  {', '.join(media) if media else '(no body)'}")
    t = data["totals"]
    print(
        f"\nTotal: {t.get('routes', 0)} routes, {t.get('operations', 0)} operations, {t.get('statuses', 0)} statuses, "
        f"{t.get('status_media_types', 0)} status x media type pairs"
    )
    f = data["features"]
    levels = ", ".join(f"{k} {v}" for k, v in f["by_level"].items())
    surfaces = ", ".join(f"{k} {v}" for k, v in f["by_surface"].items())
    print(f"Features: {f['total']} ({levels}); by surface: {surfaces}")


def since(version: str, surfaces: list[str] | None = None) -> dict[str, Any]:
    """What a server of `version` does differently from the spec's version: every annotated change after it."""
    from ollama_conformance import spec
    from ollama_conformance.errors import UsageError
    from ollama_conformance.spec.versions import VersionError, changes

    try:
        found = changes(version)
    except VersionError as exc:
        raise UsageError(str(exc)) from exc
    rows = [
        {"version": c.version, "kind": "removed" if c.until else "added", "surface": c.surface, "where": c.where,
         "change": c.text}
        for c in found
        if surfaces is None or c.surface in surfaces
    ]  # fmt: skip
    return {"spec_version": spec.SPEC_VERSION, "since": version, "changes": rows}


def _print_since(data: dict[str, Any]) -> None:
    rows = data["changes"]
    print(f"Changes after Ollama {data['since']}, up to {data['spec_version']}: {len(rows)}")
    for row in rows:
        print(f"  {row['version']:<10} {row['kind']:<7} [{row['surface']}] {row['where']}")
        if row["change"]:
            print(f"             {row['change'][:160]}")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "since", None):
        data = since(args.since, args.surface)
        printer = _print_since
    else:
        data = coverage(args.surface)
        printer = _print_text
    try:
        if args.json:
            json.dump(data, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            printer(data)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into `head`: stop quietly, as other CLI tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
