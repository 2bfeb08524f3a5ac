"""`ollama-conformance check`: run the conformance suite against a server (or the bundled reference backend)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "check a server's conformance to the Ollama API (pass / fail / not applicable / error per feature)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="URL", help="base URL of the server (default: start the reference backend)")
    parser.add_argument("--profile", choices=["local", "cloud", "reference"],
                        help="defaults for a kind of target (cloud: https://ollama.com with a Bearer key)")
    parser.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key (cloud: OLLAMA_API_KEY)")
    parser.add_argument("--model", metavar="M", help="chat/generate model (default: the first with 'completion')")
    parser.add_argument("--embed-model", metavar="E", help="embedding model (default: the first with 'embedding')")
    parser.add_argument("--surface", metavar="LIST", default="", help="comma-separated: native,openai,anthropic,cloud")
    parser.add_argument("--level", choices=["MUST", "SHOULD", "MAY"], help="only this level and the stricter ones")
    parser.add_argument("--feature", metavar="GLOB", action="append", default=[], help="feature id glob (repeatable)")
    parser.add_argument("--allow-mutations", action="store_true", help="allow tests that copy/delete models on the target")
    parser.add_argument("--junit", metavar="PATH", type=Path, help="write JUnit XML")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results JSON (conformance/results.schema.json)")
    parser.add_argument("--timeout", metavar="S", type=float, default=120.0, help="per-test timeout in seconds (default 120)")
    parser.add_argument("--discovery-timeout", metavar="S", type=float,
                        help="per-request timeout of discovery and of the warm-up of a reference backend started here "
                             "(default 300 then, else --timeout): a cold server's first model load can take minutes")
    parser.add_argument("--max-requests", metavar="N", type=int, help="send at most N requests from the tests (cloud: cost cap)")
    parser.add_argument("-n", "--workers", type=int, default=0, help="parallel pytest-xdist workers (default 0)")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression over test names")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    parser.add_argument("-q", "--quiet", action="store_true", help="one character per test instead of one line")


def run(args: argparse.Namespace) -> int:
    from ollama_conformance.conformance.runner import CheckOptions, run_check

    extra = []
    if args.keyword:
        extra += ["-k", args.keyword]
    if args.exitfirst:
        extra.append("-x")
    options = CheckOptions(
        target=args.target,
        profile=args.profile,
        api_key_env=args.api_key_env,
        model=args.model,
        embed_model=args.embed_model,
        surfaces=[s.strip() for s in args.surface.split(",") if s.strip()],
        level=args.level,
        features=args.feature,
        allow_mutations=args.allow_mutations,
        junit=args.junit.resolve() if args.junit else None,
        json=args.json.resolve() if args.json else None,
        timeout_s=args.timeout,
        discovery_timeout_s=args.discovery_timeout,
        max_requests=args.max_requests,
        workers=args.workers,
        quiet=args.quiet,
        pytest_args=extra,
    )
    return run_check(options)
