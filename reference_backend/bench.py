"""Benchmark of the reference backend: `python -m reference_backend.bench` prints figures (it asserts nothing).

Measures, on a backend it starts itself: start time (process launch to URL line, then the first model load;
`--cold` uses an empty converted-model cache so the GGUF conversion is included), single-stream decode rate
and TTFT, aggregate decode throughput at 2 and 4 concurrent streams (OLLAMA_NUM_PARALLEL=4, decode steps
batched), and the server's peak RSS (VmHWM). Decode rate is the server's eval_count / eval_duration; aggregate
throughput is the sum of eval_count over the wall-clock window of the concurrent requests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from ollama_conformance.reference_backend.launcher import ReferenceBackend

MODEL = "gemma3:270m"
PROMPT = "Once upon a time, in a small village by the sea,"


@dataclass
class StreamResult:
    ttft_s: float
    e2e_s: float
    eval_count: int
    eval_duration_s: float
    prompt_eval_count: int
    prompt_eval_duration_s: float


@dataclass
class Report:
    precision: str
    num_predict: int
    startup_s: float = 0.0
    first_load_s: float = 0.0
    cold: bool = False
    single: dict[str, float] = field(default_factory=dict)
    concurrent: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


def stream_once(url: str, num_predict: int) -> StreamResult:
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "raw": True,
        "options": {"temperature": 0, "num_predict": num_predict, "seed": 1},
    }
    started = time.perf_counter()
    ttft = 0.0
    final: dict = {}
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            item = json.loads(line)
            if "error" in item:
                raise RuntimeError(item["error"])
            if not ttft and item.get("response"):
                ttft = time.perf_counter() - started
            if item.get("done"):
                final = item
    return StreamResult(
        ttft_s=ttft,
        e2e_s=time.perf_counter() - started,
        eval_count=final.get("eval_count", 0),
        eval_duration_s=final.get("eval_duration", 0) / 1e9,
        prompt_eval_count=final.get("prompt_eval_count", 0),
        prompt_eval_duration_s=final.get("prompt_eval_duration", 0) / 1e9,
    )


def concurrent(url: str, streams: int, num_predict: int) -> tuple[list[StreamResult], float]:
    results: list[StreamResult | None] = [None] * streams
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = stream_once(url, num_predict)
        except BaseException as exc:  # reported below, the benchmark goes on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    window = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {streams} streams failed: {errors[0]}")
    return [r for r in results if r is not None], window


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_bench(args: argparse.Namespace) -> Report:
    report = Report(precision=args.precision, num_predict=args.num_predict, cold=args.cold)
    env = {"OLLAMA_NUM_PARALLEL": str(max(args.streams)), "OLLAMA_KEEP_ALIVE": "-1"}
    cold_cache = tempfile.mkdtemp(prefix="ollama-conformance-cold-") if args.cold else None
    if cold_cache:
        env["OLLAMA_CONFORMANCE_CACHE"] = cold_cache
        env["OLLAMA_MODELS"] = str(Path(cold_cache) / "models")
    server_args = ["--precision", args.precision]
    if args.threads:
        server_args += ["--threads", str(args.threads)]
    launched = time.perf_counter()
    with ReferenceBackend(args=server_args, env=env, quiet=not args.verbose) as backend:
        report.startup_s = time.perf_counter() - launched
        loading = time.perf_counter()
        httpx.post(f"{backend.url}/api/generate", json={"model": MODEL, "prompt": ""}, timeout=900).raise_for_status()
        report.first_load_s = time.perf_counter() - loading
        stream_once(backend.url, 4)  # warm-up
        singles = [stream_once(backend.url, args.num_predict) for _ in range(args.repeat)]
        report.single = {
            "decode_tok_s": statistics.median(r.eval_count / r.eval_duration_s for r in singles),
            "ttft_ms": statistics.median(r.ttft_s * 1000 for r in singles),
            "prefill_tok_s": statistics.median(r.prompt_eval_count / r.prompt_eval_duration_s for r in singles),
            "e2e_s": statistics.median(r.e2e_s for r in singles),
        }
        for streams in args.streams:
            if streams == 1:
                continue
            results, window = concurrent(backend.url, streams, args.num_predict)
            report.concurrent[str(streams)] = {
                "aggregate_tok_s": sum(r.eval_count for r in results) / window,
                "per_stream_decode_tok_s": statistics.mean(r.eval_count / r.eval_duration_s for r in results),
                "ttft_ms_max": max(r.ttft_s for r in results) * 1000,
                "window_s": window,
            }
        assert backend.process is not None
        report.peak_rss_mb = peak_rss_mb(backend.process.pid)
    if cold_cache:
        import shutil

        shutil.rmtree(cold_cache, ignore_errors=True)
    return report


def print_report(report: Report) -> None:
    print(f"reference backend benchmark: {MODEL}, precision {report.precision}, num_predict {report.num_predict}")
    print(f"  cpu threads available: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    kind = "cold (conversion included)" if report.cold else "warm (cached conversion)"
    print(f"  start, {kind}: URL after {report.startup_s:.1f} s, first model load {report.first_load_s:.1f} s")
    s = report.single
    print(
        f"  single stream: decode {s['decode_tok_s']:.1f} tok/s, TTFT {s['ttft_ms']:.0f} ms, "
        f"prefill {s['prefill_tok_s']:.0f} tok/s, e2e {s['e2e_s']:.2f} s"
    )
    for streams, figures in report.concurrent.items():
        print(
            f"  {streams} streams: aggregate {figures['aggregate_tok_s']:.1f} tok/s "
            f"({figures['per_stream_decode_tok_s']:.1f} tok/s each), worst TTFT {figures['ttft_ms_max']:.0f} ms"
        )
    print(f"  server peak RSS: {report.peak_rss_mb:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_backend.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--num-predict", type=int, default=64, help="tokens per request (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="single-stream runs (median reported)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="concurrency levels")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="start with an empty cache (includes the conversion)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="show the server's log")
    args = parser.parse_args(argv)
    if args.num_predict < 1 or args.repeat < 1 or any(s < 1 for s in args.streams):
        print("bench: --num-predict, --repeat and --streams must be positive", file=sys.stderr)
        return 2
    try:
        report = run_bench(args)
    except Exception as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
