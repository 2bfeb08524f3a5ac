"""Peer comparison: our harness, GuideLLM and NVIDIA AIPerf on the same synthetic schedule, in the same run.

The peers are not our dependencies: each lives in its own venv (default /tmp/peer-guidellm, /tmp/peer-aiperf:
`python3 -m venv /tmp/peer-guidellm && /tmp/peer-guidellm/bin/pip install guidellm`, same for aiperf). No tokenizer
can be downloaded here, so both get the bundled Gemma tokenizer from a local folder (`--tokenizer-dir`, e.g. the
reference backend's converted-model cache) and count output tokens from the server's `usage`.

    python -m load.peers --out /tmp/peers [--concurrency 1,64] [--duration 10]

Side by side on a real server (`--target URL`): each tool in turn runs the same workload (OpenAI chat stream,
`--input-tokens` synthetic prompt, `--output-tokens` cap, `--concurrency` streams, `--duration` s after 2 s of
warmup) against the same server, and one line per concurrency prints ours/theirs for TTFT p50, ITL p50, output
throughput and client CPU (ratio > 1: ours measured more). The tools measure the same server at different
moments, so a ratio within the server's own run-to-run spread (see `--repeat`) is agreement, not a difference:

    python -m ollama_conformance.load.peers --target http://127.0.0.1:18080 --model gemma3 --concurrency 1,4 \
        --duration 20 --output-tokens 32 --guidellm PEERS_VENV/bin/guidellm

For each concurrency, each tool in turn runs against a fresh synthetic server (first chunk at 200 ms, then 25
chunks of 2 tokens every 20 ms, OpenAI SSE chat), with its requests of the first 2 s dropped. Errors are against
that schedule: TTFT - 200 ms; |ITL - 9.796 ms|; |chunk gap - 20 ms| where the tool keeps chunk gaps (AIPerf's
ICL; GuideLLM keeps none). CPU: the tool's whole process tree, in cores, sampled over its steady state. Then each
tool's maximum chunk rate against 2000-chunk bursts at 16 streams, from its own output-token throughput
(one token per chunk). Nothing here is run in CI; it prints a table and writes peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from ollama_conformance.load.calibrate import (
    BURST_ARGS,
    INTERVAL_MS,
    NOMINAL_ITL_MS,
    SCHEDULE_ARGS,
    TTFT_MS,
    schedule_errors,
)
from ollama_conformance.load.metrics import dist
from ollama_conformance.load.runner import read_samples
from ollama_conformance.load.synthetic import SyntheticProcess

WARMUP_S = 2.0
HF_REVISION = "0123456789abcdef0123456789abcdef01234567"


class TreeCpu:
    """CPU seconds of a process tree between two instants (pids alive at either instant)."""

    def __init__(self, pid: int) -> None:
        self.root = pid
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] | None = None
        self.t0 = self.t1 = 0.0
        self.end: dict[int, float] = {}

    def _snapshot(self) -> dict[int, float]:
        out: dict[int, float] = {}
        try:
            root = psutil.Process(self.root)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return out
        for p in procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        return out

    def mark_start(self) -> None:
        self.start, self.t0 = self._snapshot(), time.perf_counter()

    def mark_end(self) -> None:
        self.end, self.t1 = self._snapshot(), time.perf_counter()

    def cores(self) -> float | None:
        if self.start is None or not self.end or self.t1 <= self.t0:
            return None
        used = sum(v - self.start.get(pid, 0.0) for pid, v in self.end.items())
        return used / (self.t1 - self.t0)


def run_tool(cmd: list[str], env: dict[str, str], log: Path, duration_s: float, timeout_s: float) -> dict[str, Any]:
    """Run a tool; sample its process tree's CPU from warmup + 1 s to 1 s before its run ends."""
    with open(log, "w", encoding="utf-8") as f:
        t_start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        cpu = TreeCpu(proc.pid)
        marks: list[Callable[[], None]] = [cpu.mark_start, cpu.mark_end]

        def sampler() -> None:
            # tools start at different speeds: begin when the tree first uses the server, approximated by time
            time.sleep(min(8.0, duration_s * 0.3) + WARMUP_S)
            marks[0]()
            time.sleep(max(duration_s * 0.5, 1.0))
            marks[1]()

        t = threading.Thread(target=sampler, daemon=True)
        t.start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=10)
        t.join(timeout=1)
    return {"exit_code": code, "wall_s": time.perf_counter() - t_start, "cpu_cores": cpu.cores()}


def _drop_warmup(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    if not rows:
        return rows
    t0 = min(r[key] for r in rows)
    return [r for r in rows if r[key] - t0 >= WARMUP_S * 1e9]


@dataclass(frozen=True)
class Workload:
    """What every tool is asked to run: the same model, prompt length and output cap (OpenAI chat, streamed)."""

    model: str = "synthetic"
    input_tokens: int = 16
    output_tokens: int = 50


SYNTHETIC = Workload()


def ours(url: str, conc: int, duration_s: float, out: Path, w: Workload = SYNTHETIC) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ollama_conformance", "bench", "--target", url, "--model", w.model,
           "--surface", "openai", "--endpoint", "chat", "--concurrency", str(conc), "--duration", f"{duration_s:g}s",
           "--warmup", f"{WARMUP_S:g}s", "--input-tokens", str(w.input_tokens), "--output-tokens",
           str(w.output_tokens), "--quiet", "--out", str(out)]
    if w == SYNTHETIC:
        cmd.append("--no-preload")
    info = run_tool(cmd, dict(os.environ), out.parent / f"{out.name}.log", duration_s + WARMUP_S, 600)
    samples = read_samples(out / "locust" / f"concurrency-{conc}" / "raw")
    errors = schedule_errors(samples)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    step = (results.get("steps") or [{}])[0]
    metrics = step.get("metrics") or {}
    return {**info, "requests": errors["requests"], "ttft_err_ms": errors["ttft_err_ms"],
            "itl_abs_err_ms": errors["itl_abs_err_ms"], "icl_abs_err_ms": errors["icl_abs_err_ms"],
            "ttft_ms": metrics.get("ttft_ms"), "itl_ms": metrics.get("itl_ms"),
            "failed": (step.get("requests") or {}).get("error", 0) + (step.get("requests") or {}).get("timeout", 0),
            "output_tokens_per_s": metrics.get("output_tokens_per_s")}


def guidellm(exe: str, tokenizer: Path, url: str, conc: int, duration_s: float, out: Path,
             w: Workload = SYNTHETIC) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    # validate_backend false: GuideLLM's validation is GET /health, which Ollama-style servers do not have.
    # extras.body.max_tokens: GuideLLM caps output with `max_completion_tokens`, which Ollama (and servers that
    # copy it) ignore; without `max_tokens` too its requests would run to the model's own limit, not the workload's.
    backend = json.dumps({"kind": "openai_http", "target": url, "model": w.model,
                          "request_format": "/v1/chat/completions", "validate_backend": False,
                          "extras": {"body": {"max_tokens": w.output_tokens}}})
    cmd = [exe, "run", "--backend", backend,
           "--profile", f"kind=concurrent,streams={conc}", "--constraint",
           f"kind=max_duration,seconds={duration_s + WARMUP_S:g}",
           "--data", f"kind=synthetic_text,prompt_tokens={w.input_tokens},output_tokens={w.output_tokens}",
           "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
           "--output", f"kind=json,path={out / 'benchmarks.json'}", "--disable-console-interactive"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    info = run_tool(cmd, env, out / "guidellm.log", duration_s + WARMUP_S, 600)
    path = out / "benchmarks.json"
    if not path.exists():
        return {**info, "error": f"no output: see {out / 'guidellm.log'}"}
    bench = json.loads(path.read_text())["benchmarks"][0]
    rows = []
    for r in bench["requests"]["successful"]:
        t = r["info"]["timings"]
        n_out = (r.get("output_metrics") or {}).get("text_tokens") or 0
        rows.append({"start": int(t["request_start"] * 1e9), "first": t["first_token_iteration"],
                     "last": t["last_token_iteration"], "begin": t["request_start"], "n": n_out})
    rows = _drop_warmup(rows, "start")
    ttft = [(r["first"] - r["begin"]) * 1000 for r in rows if r["first"] is not None]
    itl = [(r["last"] - r["first"]) * 1000 / (r["n"] - 1) for r in rows if r["n"] > 1 and r["first"] is not None]
    tps = (bench["metrics"].get("output_tokens_per_second") or {}).get("successful", {}).get("mean")
    # errored requests; those GuideLLM cancelled at its time limit ("incomplete") are not failures of the server
    failed = len(bench["requests"].get("errored") or [])
    return {**info, "requests": len(rows), "ttft_err_ms": dist(v - TTFT_MS for v in ttft),
            "itl_abs_err_ms": dist(abs(v - NOMINAL_ITL_MS) for v in itl), "icl_abs_err_ms": dist([]),
            "ttft_ms": dist(ttft), "itl_ms": dist(itl), "failed": failed, "output_tokens_per_s": tps}


def aiperf(exe: str, hf_home: Path, url: str, conc: int, duration_s: float, out: Path,
           w: Workload = SYNTHETIC) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = [exe, "profile", "--model", w.model, "--url", url, "--endpoint-type", "chat", "--streaming",
           "--concurrency", str(conc), "--benchmark-duration", f"{duration_s + WARMUP_S:g}", "--tokenizer",
           "local/gemmatok", "--use-server-token-count", "--isl", str(w.input_tokens), "--osl", str(w.output_tokens),
           # the cap as `max_tokens`: Ollama-style servers ignore AIPerf's default `max_completion_tokens`
           "--use-legacy-max-tokens", "--artifact-dir",
           str(out / "artifacts"), "--ui-type", "none"]
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    info = run_tool(cmd, env, out / "aiperf.log", duration_s + WARMUP_S, 600)
    path = out / "artifacts" / "profile_export.jsonl"
    if not path.exists():
        return {**info, "error": f"no output: see {out / 'aiperf.log'}"}
    rows = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        m = rec.get("metrics") or {}
        if "time_to_first_token" not in m:
            continue
        rows.append({"start": rec["metadata"]["request_start_ns"], "ttft": m["time_to_first_token"]["value"],
                     "itl": (m.get("inter_token_latency") or {}).get("value"),
                     "icl": (m.get("inter_chunk_latency") or {}).get("value") or []})
    rows = _drop_warmup(rows, "start")
    agg = json.loads((out / "artifacts" / "profile_export_aiperf.json").read_text())
    tps = (agg.get("output_token_throughput") or {}).get("avg")
    return {**info, "requests": len(rows), "ttft_err_ms": dist(r["ttft"] - TTFT_MS for r in rows),
            "itl_abs_err_ms": dist(abs(r["itl"] - NOMINAL_ITL_MS) for r in rows if r["itl"] is not None),
            "icl_abs_err_ms": dist(abs(g - INTERVAL_MS) for r in rows for g in r["icl"]),
            "ttft_ms": dist(r["ttft"] for r in rows), "itl_ms": dist(r["itl"] for r in rows),
            "failed": 0, "output_tokens_per_s": tps}


def hf_cache_from(tokenizer: Path, root: Path) -> Path:
    """AIPerf loads offline tokenizers only from an HF hub cache: lay the local folder out as one."""
    repo = root / "hub" / "models--local--gemmatok"
    snap = repo / "snapshots" / HF_REVISION
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(HF_REVISION)
    for f in tokenizer.iterdir():
        if f.is_file() and f.suffix == ".json":
            shutil.copy(f, snap / f.name)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/peers")
    p.add_argument("--concurrency", default="1,64")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--guidellm", default="/tmp/peer-guidellm/bin/guidellm")
    p.add_argument("--aiperf", default="/tmp/peer-aiperf/bin/aiperf")
    p.add_argument("--tokenizer-dir", default="",
                   help="folder with tokenizer.json (default: the reference backend's converted gemma3 cache)")
    p.add_argument("--skip-burst", action="store_true")
    p.add_argument("--target", default="", help="compare on this server (OpenAI chat) instead of the synthetic one")
    p.add_argument("--model", default="", help="--target: the model name to send")
    p.add_argument("--input-tokens", type=int, default=16, help="--target: synthetic prompt length")
    p.add_argument("--output-tokens", type=int, default=32, help="--target: output cap per request")
    p.add_argument("--repeat", type=int, default=1, help="--target: run the whole round N times (server spread)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Path(args.tokenizer_dir) if args.tokenizer_dir else _default_tokenizer()
    if tokenizer is None or not (tokenizer / "tokenizer.json").exists():
        print("peers: no tokenizer folder found: pass --tokenizer-dir", file=sys.stderr)
        return 2
    tok_only = out / "tokenizer"
    tok_only.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, tok_only / name)
    hf_home = hf_cache_from(tok_only, out / "hf")
    w = Workload(args.model or "synthetic", args.input_tokens, args.output_tokens) if args.target else SYNTHETIC
    tools: dict[str, Callable[[str, int, float, Path], dict[str, Any]]] = {
        "ours": lambda u, c, d, o: ours(u, c, d, o, w)}
    if Path(args.guidellm).exists():
        tools["guidellm"] = lambda u, c, d, o: guidellm(args.guidellm, tok_only, u, c, d, o, w)
    else:
        print(f"peers: {args.guidellm} not found: GuideLLM skipped", file=sys.stderr)
    if Path(args.aiperf).exists():
        tools["aiperf"] = lambda u, c, d, o: aiperf(args.aiperf, hf_home, u, c, d, o, w)
    else:
        print(f"peers: {args.aiperf} not found: AIPerf skipped", file=sys.stderr)
    if args.target:
        if not args.model:
            print("peers: --target needs --model", file=sys.stderr)
            return 2
        return side_by_side(args.target.rstrip("/"), w, tools, [int(c) for c in args.concurrency.split(",")],
                            args.duration, max(args.repeat, 1), out)
    report: dict[str, Any] = {"schedule": {"ttft_ms": TTFT_MS, "interval_ms": INTERVAL_MS, "chunks": 25,
                                           "tokens_per_chunk": 2}, "load_average_start": os.getloadavg(),
                              "schedule_runs": [], "burst_runs": []}
    for conc in [int(c) for c in args.concurrency.split(",")]:
        for name, fn in tools.items():
            with SyntheticProcess(SCHEDULE_ARGS) as server:
                row = {"tool": name, "concurrency": conc, **fn(server.url, conc, args.duration,
                                                               out / f"{name}-c{conc}")}
                # the server's own lateness in the same run: what no client could have measured better
                row["server_lateness"] = httpx.get(server.url + "/synthetic/stats", timeout=10).json()
            report["schedule_runs"].append(row)
            print(_line(row), flush=True)
    if not args.skip_burst:
        for name, fn in tools.items():
            with SyntheticProcess(BURST_ARGS) as server:
                row = {"tool": name, "concurrency": 16, **fn(server.url, 16, 6.0, out / f"{name}-burst")}
            report["burst_runs"].append(row)
            tps = row.get("output_tokens_per_s")
            cpu = row.get("cpu_cores")
            print(f"burst {name:9s}: {tps or 0:,.0f} chunks/s (1 token per chunk), CPU "
                  f"{'-' if cpu is None else f'{cpu:.2f}'} cores", flush=True)
    report["load_average_end"] = os.getloadavg()
    (out / "peers.json").write_text(json.dumps(report, indent=1))
    print(f"peers: wrote {out / 'peers.json'}")
    return 0


def side_by_side(url: str, w: Workload, tools: dict[str, Callable[[str, int, float, Path], dict[str, Any]]],
                 concurrencies: list[int], duration_s: float, repeat: int, out: Path) -> int:
    """Every tool on the same workload and server, in turn; one ours/theirs line per peer and concurrency."""
    report: dict[str, Any] = {"target": url, "workload": w.__dict__, "duration_s": duration_s, "warmup_s": WARMUP_S,
                              "load_average_start": os.getloadavg(), "runs": []}
    for conc in concurrencies:
        for round_ in range(repeat):
            rows: dict[str, dict[str, Any]] = {}
            for name, fn in tools.items():
                rows[name] = {"tool": name, "concurrency": conc, "round": round_,
                              **fn(url, conc, duration_s, out / f"{name}-c{conc}-r{round_}")}
                report["runs"].append(rows[name])
                print(_figures_line(rows[name]), flush=True)
            for name, row in rows.items():
                if name != "ours":
                    print(_ratio_line(rows["ours"], row), flush=True)
    report["load_average_end"] = os.getloadavg()
    (out / "peers-target.json").write_text(json.dumps(report, indent=1))
    print(f"peers: wrote {out / 'peers-target.json'}")
    return 0


def _p50(row: dict[str, Any], key: str) -> float | None:
    d = row.get(key) or {}
    return d.get("p50") if isinstance(d, dict) else None


def _figures_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['tool']:9s} c={row['concurrency']:<3d}: {row['error']}"

    def f(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    return (f"{row['tool']:9s} c={row['concurrency']:<3d}: {row['requests']} requests ({row.get('failed', 0)} failed) | "
            f"TTFT p50 {f(_p50(row, 'ttft_ms'))} ms | ITL p50 {f(_p50(row, 'itl_ms'), 2)} ms | "
            f"{f(row.get('output_tokens_per_s'))} tok/s | client CPU {f(row.get('cpu_cores'), 3)} cores")


def _ratio_line(a: dict[str, Any], b: dict[str, Any]) -> str:
    def r(x: float | None, y: float | None) -> str:
        return "-" if x is None or y is None or y == 0 else f"{x / y:.2f}"

    return (f"ours/{b['tool']} c={a['concurrency']}: TTFT p50 {r(_p50(a, 'ttft_ms'), _p50(b, 'ttft_ms'))} | "
            f"ITL p50 {r(_p50(a, 'itl_ms'), _p50(b, 'itl_ms'))} | throughput "
            f"{r(a.get('output_tokens_per_s'), b.get('output_tokens_per_s'))} | client CPU "
            f"{r(a.get('cpu_cores'), b.get('cpu_cores'))}")


def _default_tokenizer() -> Path | None:
    base = Path(os.environ.get("OLLAMA_CONFORMANCE_CACHE", Path.home() / ".cache" / "ollama-conformance"))
    for d in sorted((base / "converted").glob("*")):
        if (d / "tokenizer.json").exists():
            return d
    return None


def _line(row: dict[str, Any]) -> str:
    def f(d: dict[str, Any] | None, k: str) -> str:
        return "-" if not d or d.get(k) is None else f"{d[k]:.3f}"

    if "error" in row:
        return f"{row['tool']:9s} c={row['concurrency']:<3d}: {row['error']}"
    cpu = row.get("cpu_cores")
    late = row.get("server_lateness") or {}
    return (f"{row['tool']:9s} c={row['concurrency']:<3d}: {row['requests']} requests | TTFT err p50 "
            f"{f(row['ttft_err_ms'], 'p50')} p99 {f(row['ttft_err_ms'], 'p99')} ms | ITL |err| p99 "
            f"{f(row['itl_abs_err_ms'], 'p99')} ms | gap |err| p99 {f(row['icl_abs_err_ms'], 'p99')} ms | CPU "
            f"{'-' if cpu is None else f'{cpu:.3f}'} cores | server late p50/p99: first chunk "
            f"{f(late.get('first_chunk_late_ms'), 'p50')}/{f(late.get('first_chunk_late_ms'), 'p99')} ms, chunks "
            f"{f(late.get('chunk_late_ms'), 'p50')}/{f(late.get('chunk_late_ms'), 'p99')} ms")


if __name__ == "__main__":
    sys.exit(main())
