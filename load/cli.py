"""`ollama-conformance bench`: load-test an Ollama-compatible server, or (--calibrate) measure the harness itself.

Cheap to import: locust, numpy and the reference backend are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from ollama_conformance.errors import UsageError

HELP = "benchmark a server under load (TTFT, ITL, E2E, throughput, goodput, telemetry); --calibrate checks the harness"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", help="base URL of the server (default: start the bundled reference backend)")
    p.add_argument("--profile", choices=["reference", "local", "cloud"],
                   help="local: http://localhost:11434; cloud: https://ollama.com with $OLLAMA_API_KEY")
    p.add_argument("--model", default="gemma3:270m", help="model to load-test (default gemma3:270m)")
    p.add_argument("--surface", choices=["native", "openai"], default="native")
    p.add_argument("--endpoint", choices=["chat", "generate", "completions", "embed"], default="chat",
                   help="native: chat, generate, embed; openai: chat, completions, embed")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", default=None, help="closed loop: concurrent streams per step, e.g. 1,2,4")
    load.add_argument("--rate", default=None, help="open loop: requests/s per step, e.g. 0.5,1,2")
    p.add_argument("--arrival", default="poisson", help="open loop arrivals: poisson, constant or gamma:K")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", default=None, help="measured time per step after warmup (default 60s)")
    stop.add_argument("--requests", type=int, default=None, help="measured requests per step")
    p.add_argument("--warmup", default="10s", help="time at the start of each step whose requests are excluded")
    p.add_argument("--prompts", help="prompts file: one per line, or JSONL objects with 'prompt'")
    p.add_argument("--input-tokens", help="synthetic prompt of about N tokens (default 16), or a distribution: "
                   "uniform:A,B or normal:MEAN,SD")
    p.add_argument("--output-tokens", default="64",
                   help="cap on output tokens per request (default 64), or uniform:A,B or normal:MEAN,SD")
    p.add_argument("--workload", choices=["single", "multi-turn", "trace"], default="single",
                   help="multi-turn: conversations that resend their history; trace: replay --trace")
    p.add_argument("--turns", type=int, default=4, help="multi-turn: turns per conversation (default 4)")
    p.add_argument("--system-prompt-tokens", type=int, default=0,
                   help="multi-turn: a system prompt of about N tokens shared by every conversation")
    p.add_argument("--trace", help="trace: JSONL file (at_s/input_tokens/output_tokens, Mooncake fields) or a "
                   "BurstGPT CSV")
    p.add_argument("--trace-speed", type=float, default=1.0, help="trace: replay speed factor (default 1)")
    p.add_argument("--slo", help="goodput objectives, e.g. ttft=500ms,itl=50ms,e2e=5s")
    p.add_argument("--workers", type=int, default=0, help="run N local locust workers under a master")
    p.add_argument("--out", default="bench-results", help="output folder (results.json, samples.jsonl, CSVs)")
    p.add_argument("--request-timeout", default="120s", help="per-request time limit (default 120s)")
    p.add_argument("--seed", type=int, help="sampling seed sent with every request")
    p.add_argument("--server-pid", type=int, help="pid of a local server process, to sample its RSS")
    p.add_argument("--no-preload", action="store_true",
                   help="skip the unmeasured request that loads the model before the first step")
    p.add_argument("--find-max-rate", action="store_true",
                   help="search the highest open-loop rate whose requests meet --slo (bounded by --search-budget)")
    p.add_argument("--search-start", type=float, default=1.0, help="--find-max-rate: first rate, req/s (default 1)")
    p.add_argument("--search-budget", default="300s", help="--find-max-rate: time budget (default 300s)")
    p.add_argument("--goodput-fraction", type=float, default=0.9,
                   help="--find-max-rate: share of requests that must meet the SLOs (default 0.9)")
    p.add_argument("--search-tolerance", type=float, default=0.05,
                   help="--find-max-rate: stop when the bracket is this narrow, relative (default 0.05)")
    p.add_argument("--max-rate", type=float, default=1000.0, help="--find-max-rate: highest rate tried (default 1000)")
    p.add_argument("--no-reuse", action="store_true",
                   help="open a new connection for every request (sends Connection: close) instead of keep-alive")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the harness's own error against the built-in synthetic server, and print it")
    p.add_argument("--calibrate-duration", default="10s", help="--calibrate: measured time per step (default 10s)")


def options_from_args(args: argparse.Namespace) -> object:
    from ollama_conformance.load.capacity import SearchOptions
    from ollama_conformance.load.runner import BenchOptions
    from ollama_conformance.load.schedule import parse_duration, parse_list, parse_slo

    rate = parse_list(args.rate, "--rate") if args.rate else None
    if args.find_max_rate and rate:  # the search sets the rates: a given one is where it starts
        args.search_start, rate = rate[0], None
    concurrency = [1]
    if args.concurrency:
        values = parse_list(args.concurrency, "--concurrency")
        if any(v != int(v) for v in values):
            raise UsageError("--concurrency values must be whole numbers")
        concurrency = [int(v) for v in values]
    duration = None if args.requests is not None else parse_duration(args.duration or "60s", "--duration")
    input_tokens, input_lengths = _tokens_or_lengths(args.input_tokens, "--input-tokens")
    output_tokens, output_lengths = _tokens_or_lengths(args.output_tokens, "--output-tokens")
    return BenchOptions(
        model=args.model, target=args.target, profile=args.profile, surface=args.surface, endpoint=args.endpoint,
        concurrency=concurrency, rate=rate, arrival=args.arrival, duration_s=duration, requests=args.requests,
        warmup_s=parse_duration(args.warmup, "--warmup"), prompts=args.prompts, input_tokens=input_tokens,
        output_tokens=output_tokens, input_lengths=input_lengths, output_lengths=output_lengths,
        workload=args.workload, turns=args.turns, system_prompt_tokens=args.system_prompt_tokens, trace=args.trace,
        trace_speed=args.trace_speed, find_max_rate=args.find_max_rate,
        search=SearchOptions(start_rps=args.search_start, goodput_fraction=args.goodput_fraction,
                             tolerance=args.search_tolerance, max_rps=args.max_rate,
                             budget_s=parse_duration(args.search_budget, "--search-budget")),
        slo=parse_slo(args.slo), workers=args.workers, out_dir=args.out,
        request_timeout_s=parse_duration(args.request_timeout, "--request-timeout"), seed=args.seed,
        server_pid=args.server_pid, preload=not args.no_preload, reuse_connections=not args.no_reuse,
        quiet=args.quiet,
    )


def _tokens_or_lengths(text: str | None, option: str) -> tuple[int | None, str | None]:
    """'64' -> (64, None); 'uniform:32,96' -> (None, 'uniform:32,96'), checked."""
    from ollama_conformance.load.workloads import parse_lengths

    lengths = parse_lengths(text, option)
    if lengths is None:
        return None, None
    if lengths.kind == "fixed":
        return int(lengths.a), None
    return None, str(text)


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        from ollama_conformance.load.calibrate import run_calibration
        from ollama_conformance.load.schedule import parse_duration

        return run_calibration(duration_s=parse_duration(args.calibrate_duration, "--calibrate-duration"),
                               out_dir=args.out, stream=sys.stdout)
    from ollama_conformance.load.runner import run_bench

    return run_bench(options_from_args(args))  # type: ignore[arg-type]
