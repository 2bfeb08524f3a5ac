"""`ollama-conformance check`: run the conformance suite against a server (or the bundled reference backend)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "check a server's conformance to the Ollama API (pass / fail / inconclusive / not applicable / error per feature)"
EPILOG = """exit status: 0 no test at or above the gate failed, errored or was inconclusive; 1 some did; 2 bad usage;
3 nothing at the URL answers HTTP; 4 the harness broke (its traceback is saved to a file named on stderr).
Each surface (native /api, openai /v1, anthropic /v1/messages) is discovered on its own: an absent one fails its
tests with one cause, the others are checked in full."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--target", metavar="URL", help="base URL of the server (default: start the reference backend)")
    parser.add_argument("--profile", choices=["local", "cloud", "reference"],
                        help="defaults for a kind of target (cloud: https://ollama.com with a Bearer key)")
    parser.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key (cloud: OLLAMA_API_KEY)")
    parser.add_argument("--model", metavar="M", help="chat/generate model (default: the first with 'completion')")
    parser.add_argument("--embed-model", metavar="E", help="embedding model (default: the first with 'embedding')")
    parser.add_argument("--surface", metavar="LIST", default="", help="comma-separated: native,openai,anthropic,cloud")
    parser.add_argument("--level", choices=["MUST", "SHOULD", "MAY"], help="only this level and the stricter ones")
    parser.add_argument("--gate", choices=["MUST", "SHOULD", "MAY", "none"], default="MUST",
                        help="exit 1 when a test at or above this level did not pass (default MUST; none: never)")
    parser.add_argument("--feature", metavar="GLOB", action="append", default=[], help="feature id glob (repeatable)")
    parser.add_argument("--allow-mutations", action="store_true", help="allow tests that copy/delete models on the target")
    parser.add_argument("--registry", metavar="URL",
                        help="OCI registry for the pull/push tests (default: start the bundled one on loopback)")
    parser.add_argument("--baseline", metavar="URL", help="differential mode: send the same deterministic requests to --target "
                        "and to this server (e.g. a real Ollama) and list the structural differences instead of running the suite")
    parser.add_argument("--clients", metavar="LIST", default="", help="also run the official clients' scripted probes "
                        "(comma-separated: ollama-python,openai-python,anthropic-python,ollama-js,openai-js; all) into the results")
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
    """`check`; a bug of the harness is handled by the dispatcher (ollama_conformance/cli.py): one line, exit 4."""
    from ollama_conformance.conformance.runner import CheckOptions, run_check

    if args.baseline:
        from ollama_conformance.conformance.differential import run_from_check_args

        return run_from_check_args(args)
    if args.clients:  # a bad client name is a usage error before the suite runs, not after
        from ollama_conformance.conformance.client_probes.runner import run_after_check, validate_args

        validate_args(args)
    extra = []
    if args.keyword:
        extra += ["-k", args.keyword]
    if args.exitfirst:
        extra.append("-x")
    if args.registry:
        extra += ["--ollama-registry", args.registry]
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
        gate=args.gate,
        pytest_args=extra,
    )
    code = run_check(options)
    return run_after_check(args, code) if args.clients else code
