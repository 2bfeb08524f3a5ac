"""The bench runner: one locust run per step (a concurrency or a rate), raw samples merged, metrics, results.json.

Programmatic entry point (used by `run` and by the CLI):

    from ollama_conformance.load.runner import BenchOptions, run_bench
    status = run_bench(BenchOptions(model="gemma3:270m", concurrency=[1, 2], duration_s=30, out_dir="out"))

`run_bench` returns 0 when results were written and at least one request succeeded, 1 when every request failed,
and raises `UsageError` (bad options) or `TargetError` (target unusable) as the CLI contract says. Locust is never
imported here: it monkey-patches the process at import (gevent), so it runs as child processes, a master plus N
workers with `workers > 0`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from ollama_conformance import __version__
from ollama_conformance.errors import TargetError, UsageError
from ollama_conformance.load.capacity import SearchOptions, find_max_rate
from ollama_conformance.load.endpoints import endpoint_spec, load_prompts
from ollama_conformance.load.metrics import Slo, dist, step_metrics
from ollama_conformance.load.schedule import parse_arrival
from ollama_conformance.load.telemetry import TelemetrySampler, gpu_inventory
from ollama_conformance.load.workloads import check_workload, parse_lengths
from ollama_conformance.vocabulary import BENCH_KIND

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")
KIND = BENCH_KIND
SCHEMA_VERSION = 1
PROFILES = {"local": "http://localhost:11434", "cloud": "https://ollama.com"}
CPU_WARN_PERCENT = 80.0
LAG_WARN_MS = 20.0
LATE_WARN_MS = 10.0


@dataclass
class BenchOptions:
    """Every option of `bench` (see `load.cli` for their meaning); defaults are the CLI's."""

    model: str = "gemma3:270m"
    target: str | None = None
    profile: str | None = None
    surface: str = "native"
    endpoint: str = "chat"
    concurrency: list[int] = field(default_factory=lambda: [1])
    rate: list[float] | None = None
    arrival: str = "poisson"
    duration_s: float | None = 60.0
    requests: int | None = None
    warmup_s: float = 10.0
    prompts: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = 64
    slo: dict[str, float] = field(default_factory=dict)
    workers: int = 0
    out_dir: str = "bench-results"
    request_timeout_s: float = 120.0
    seed: int | None = None
    server_pid: int | None = None
    preload: bool = True
    reuse_connections: bool = True
    workload: str = "single"
    input_lengths: str | None = None
    output_lengths: str | None = None
    turns: int = 4
    system_prompt_tokens: int = 0
    trace: str | None = None
    trace_speed: float = 1.0
    find_max_rate: bool = False
    search: SearchOptions = field(default_factory=SearchOptions)
    quiet: bool = False

    def validate(self) -> None:
        if self.duration_s is None and self.requests is None:
            raise UsageError("give --duration or --requests")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError("--duration must be > 0")
        if self.requests is not None and self.requests < 1:
            raise UsageError("--requests must be >= 1")
        if self.warmup_s < 0:
            raise UsageError("--warmup must be >= 0")
        if self.workers < 0 or self.workers > 64:
            raise UsageError("--workers must be between 0 and 64")
        if self.request_timeout_s <= 0:
            raise UsageError("--request-timeout must be > 0")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise UsageError("--output-tokens must be >= 1")
        if not self.rate and (not self.concurrency or any(c < 1 for c in self.concurrency)):
            raise UsageError("--concurrency values must be >= 1")
        if self.profile is not None and self.profile not in ("reference", "local", "cloud"):
            raise UsageError(f"unknown profile {self.profile!r} (reference, local, cloud)")
        if self.rate:
            parse_arrival(self.arrival)
        endpoint_spec(self.surface, self.endpoint, self.model, self.output_tokens, self.seed)
        load_prompts(self.prompts, self.input_tokens)
        parse_lengths(self.input_lengths, "--input-tokens")
        parse_lengths(self.output_lengths, "--output-tokens")
        check_workload(self.workload, self.endpoint, bool(self.rate or self.find_max_rate), self.turns,
                       self.system_prompt_tokens, self.trace, self.trace_speed)
        if self.find_max_rate:
            if not (self.slo and Slo(**self.slo).given):
                raise UsageError("--find-max-rate needs --slo (what a sustainable rate must meet)")
            if self.workload == "trace":
                raise UsageError("--find-max-rate sets the arrival rate itself: not with --workload trace")
            self.search.validate()

    @property
    def mode(self) -> str:
        if self.find_max_rate:
            return "rate"
        if self.workload == "trace":
            return "trace"
        return "rate" if self.rate else "concurrency"

    def steps(self) -> list[tuple[str, float]]:
        if self.workload == "trace":
            return [(f"trace=x{self.trace_speed:g}", self.trace_speed)]
        if self.rate:
            return [(f"rate={r:g}", r) for r in self.rate]
        return [(f"concurrency={c}", float(c)) for c in self.concurrency]


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(opts: BenchOptions, text: str) -> None:
    if not opts.quiet:
        print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def resolve_target(opts: BenchOptions) -> Iterator[tuple[str, str, int | None]]:
    """(url, profile, local server pid): the given URL, a profile's, or a reference backend started here."""
    if opts.target:
        yield opts.target.rstrip("/"), opts.profile or "custom", opts.server_pid
        return
    if opts.profile in PROFILES:
        yield PROFILES[opts.profile], opts.profile, opts.server_pid
        return
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend(quiet=opts.quiet) as backend:
        pid = backend.process.pid if backend.process is not None else None
        yield backend.url, "reference", pid


def _auth_headers(profile: str) -> dict[str, str]:
    key = os.environ.get("OLLAMA_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key and profile == "cloud" else {}


def probe_target(url: str, model: str, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(server version, model digest) from /api/version and /api/tags; TargetError when nothing answers."""
    try:
        with httpx.Client(base_url=url, timeout=10.0, headers=headers) as client:
            version = None
            r = client.get("/api/version")
            if r.status_code == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    version = r.json().get("version")
            digest = None
            r = client.get("/api/tags")
            if r.status_code == 200:
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    for m in r.json().get("models") or []:
                        if model in (m.get("name"), m.get("model")):
                            digest = m.get("digest")
            return version, digest
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None


def preload_model(opts: BenchOptions, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """One unmeasured request before the steps, so a cold model load is not booked into a step's latencies.

    Its figures are kept (`load_duration` shows the cold load) and a failure is reported, not fatal: the steps
    will show what the target does.
    """
    from ollama_conformance.load.client import StreamClient

    spec = endpoint_spec(opts.surface, opts.endpoint, opts.model, 1, opts.seed)
    client = StreamClient(url, opts.request_timeout_s, headers)
    try:
        s = client.measure(spec, spec.body(load_prompts(opts.prompts, opts.input_tokens)[0]), time.perf_counter_ns())
    finally:
        client.close()
    return {"status": s["status"], "error": s["error"], "e2e_ms": s["e2e_ms"],
            "load_duration_ms": (s.get("server") or {}).get("load_duration", 0) / 1e6}


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count() or 0,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "gpus": gpu_inventory()}


def _locust_args(opts: BenchOptions, url: str, step: str, value: float, samples_dir: Path, per_process: int | None,
                 bearer: bool, workers: int) -> list[str]:
    open_loop = bool(opts.rate) or opts.workload == "trace"
    users = max(workers, 1) if open_loop else int(value)
    args = [
        "-f", str(LOCUSTFILE), "--host", url, "--model", opts.model, "--surface", opts.surface,
        "--endpoint", opts.endpoint, "--warmup", f"{opts.warmup_s:g}", "--step-name", step,
        "--samples-dir", str(samples_dir), "--request-timeout", f"{opts.request_timeout_s:g}",
        "-u", str(users), "-r", str(users),
    ]
    if opts.duration_s is not None:
        args += ["--window", f"{opts.duration_s:g}"]
    if per_process:
        args += ["--max-requests", str(per_process)]
    if opts.prompts:
        args += ["--prompts", opts.prompts]
    if opts.input_tokens is not None:
        args += ["--input-tokens", str(opts.input_tokens)]
    if opts.output_tokens is not None:
        args += ["--output-tokens", str(opts.output_tokens)]
    if opts.seed is not None:
        args += ["--seed", str(opts.seed)]
    if opts.rate:
        args += ["--rate", f"{value:g}", "--rate-users", str(users), "--arrival", opts.arrival]
    if bearer:
        args += ["--bearer-env", "OLLAMA_API_KEY"]
    if not opts.reuse_connections:
        args += ["--no-reuse"]
    if opts.workload != "single":
        args += ["--workload", opts.workload]
    if opts.input_lengths:
        args += ["--input-lengths", opts.input_lengths]
    if opts.output_lengths:
        args += ["--output-lengths", opts.output_lengths]
    if opts.workload == "multi-turn":
        args += ["--turns", str(opts.turns), "--system-prompt-tokens", str(opts.system_prompt_tokens)]
    if opts.workload == "trace" and opts.trace:
        args += ["--trace", opts.trace, "--trace-speed", f"{opts.trace_speed:g}", "--rate-users", str(users)]
    return args


def _step_bound_s(opts: BenchOptions) -> float:
    """Hard wall-clock limit of one step: the users end it themselves well before, this only stops a hang."""
    body = opts.duration_s if opts.duration_s is not None else 3600.0
    return opts.warmup_s + body + opts.request_timeout_s + 30.0


def run_locust(opts: BenchOptions, url: str, step: str, value: float, step_dir: Path, bearer: bool) -> dict[str, Any]:
    """Run one step as locust child processes; returns pids and the locust exit statuses."""
    samples_dir = step_dir / "raw"
    samples_dir.mkdir(parents=True, exist_ok=True)
    # every worker must get at least one user, or it would never report that it is done
    workers = opts.workers if (opts.rate or opts.workload == "trace") else min(opts.workers, int(value))
    per_process = None
    if opts.requests is not None:
        per_process = -(-opts.requests // max(workers, 1))
    base = [sys.executable, "-m", "locust"]
    common = _locust_args(opts, url, step, value, samples_dir, per_process, bearer, workers)
    bound = _step_bound_s(opts)
    run_args = ["--headless", "--only-summary", "-t", f"{int(bound)}s", "--stop-timeout", f"{opts.request_timeout_s:g}",
                "--csv", str(step_dir / "locust"), "--loglevel", "WARNING"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(step_dir / "locust.log", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if workers:
            port = _free_port()
            procs.append(subprocess.Popen(
                [*base, *common, *run_args, "--master", "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", str(port), "--expect-workers", str(workers),
                 "--expect-workers-max-wait", "120"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
            for _ in range(workers):
                procs.append(subprocess.Popen(
                    [*base, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                     "--loglevel", "WARNING"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        else:
            procs.append(subprocess.Popen([*base, *common, *run_args], stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env))
        deadline = time.monotonic() + bound + 60.0
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(deadline - time.monotonic(), 1.0)))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(timeout=10))
        return {"exit_codes": codes}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        log.close()


def read_samples(samples_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(str(samples_dir / "samples-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    with contextlib.suppress(ValueError):
                        rows.append(json.loads(line))
    return rows


def read_health(samples_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(str(samples_dir / "health-*.json"))):
        with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def harness_health(health: list[dict[str, Any]], steps: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Client CPU (percent of one core, per locust process, worst one), loop lag, late sends; warnings."""
    cpu = [100.0 * h["cpu_s"] / h["wall_s"] for h in health if h.get("wall_s")]
    lag = dist(v for h in health for v in h.get("loop_lag_ms") or ())
    warnings = []
    worst = max(cpu) if cpu else 0.0
    if worst > CPU_WARN_PERCENT:
        warnings.append(f"a locust process used {worst:.0f}% of a core: the client, not the server, may be the "
                        "bottleneck (add --workers)")
    if lag["p99"] is not None and lag["p99"] > LAG_WARN_MS:
        warnings.append(f"greenlet loop lag p99 {lag['p99']:.1f} ms: client-side delays inflate the latencies")
    for s in steps:
        delay = s["metrics"].get("read_delay_max_ms") or {}
        if delay.get("p99") is not None and delay["p99"] > LAG_WARN_MS:
            warnings.append(f"{s['name']}: bytes waited up to {delay['p99']:.1f} ms (p99) before the client read "
                            "them; kernel receive stamps keep the latencies right, but the client is slow to keep up")
        late = s["metrics"]["send_lateness_ms"]
        if mode == "rate" and late["p99"] is not None and late["p99"] > LATE_WARN_MS:
            warnings.append(f"{s['name']}: sends were late (p99 {late['p99']:.1f} ms after their intended start); "
                            "latencies count it from the intended start")
    return {"client_cpu_percent": worst, "client_cpu_percent_per_process": cpu,
            "loop_lag_ms": lag, "warnings": warnings}


def run_bench(opts: BenchOptions) -> int:
    """Run every step against the target, write results.json, samples.jsonl and locust CSVs into `opts.out_dir`."""
    opts.validate()
    out = Path(opts.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    started_at = _now_rfc3339()
    slo = Slo(**opts.slo) if opts.slo else None
    with resolve_target(opts) as (url, profile, pid):
        headers = _auth_headers(profile)
        version, digest = probe_target(url, opts.model, headers)
        _log(opts, f"bench: target {url} (profile {profile}, version {version}), model {opts.model}")
        sampler = TelemetrySampler(url, pid, headers)
        sampler.start()
        preload = None
        if opts.preload:
            preload = preload_model(opts, url, headers)
            _log(opts, f"bench: preload request {preload['status']} in {preload['e2e_ms'] or 0:.0f} ms"
                 + (f" ({preload['error']})" if preload["error"] else ""))
        steps: list[dict[str, Any]] = []
        health: list[dict[str, Any]] = []
        capacity = None
        samples_path = out / "samples.jsonl"
        try:
            with open(samples_path, "w", encoding="utf-8") as samples_out:

                def run_step(name: str, value: float) -> dict[str, Any]:
                    step_dir = out / "locust" / name.replace("=", "-")
                    if step_dir.exists():
                        shutil.rmtree(step_dir)
                    step_dir.mkdir(parents=True)
                    _log(opts, f"bench: step {name} ...")
                    t_start = time.perf_counter_ns()
                    info = run_locust(step_opts, url, name, value, step_dir, bool(headers))
                    t_end = time.perf_counter_ns()
                    rows = read_samples(step_dir / "raw")
                    step_health = read_health(step_dir / "raw")
                    health.extend(step_health)
                    for row in rows:
                        samples_out.write(json.dumps(row, separators=(",", ":")) + "\n")
                    step = {"name": name, "mode": opts.mode, "value": value, "started_ns": t_start,
                            "ended_ns": t_end, "locust_exit_codes": info["exit_codes"],
                            "workers": sorted({r.get("worker", "?") for r in rows}),
                            **step_metrics(rows, opts.warmup_s, slo)}
                    if not rows:
                        step["error"] = f"no samples: see {step_dir / 'locust.log'}"
                    steps.append(step)
                    _log(opts, summary_line(step))
                    return step

                if opts.find_max_rate:
                    # each probe is an open-loop step; `run_locust` reads the mode from `rate`
                    step_opts = replace(opts, rate=[opts.search.start_rps])
                    capacity = find_max_rate(lambda r: run_step(f"rate={r:.4g}", r), opts.search,
                                             lambda text: _log(opts, text))
                    _log(opts, capacity_line(capacity.to_json()))
                else:
                    step_opts = opts
                    for name, value in opts.steps():
                        run_step(name, value)
        finally:
            sampler.stop()
        telemetry = sampler.result()
    results = {
        "kind": KIND, "schema_version": SCHEMA_VERSION, "tool_version": __version__,
        "started_at": started_at, "finished_at": _now_rfc3339(),
        "target": {"url": url, "profile": profile, "version": version},
        "model": {"name": opts.model, "digest": digest},
        "hardware": hardware(),
        "config": {**asdict(opts), "mode": opts.mode, "path": endpoint_spec(
            opts.surface, opts.endpoint, opts.model, opts.output_tokens, opts.seed).path},
        "preload": preload,
        "steps": steps,
        "telemetry": telemetry,
        "harness": harness_health(health, steps, opts.mode),
        "samples_file": "samples.jsonl",
    }
    if capacity is not None:
        results["capacity"] = capacity.to_json()
    with open(out / "results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    for w in results["harness"]["warnings"]:
        _log(opts, f"bench: warning: {w}")
    _log(opts, f"bench: wrote {out / 'results.json'} and {out / 'samples.jsonl'}")
    ok = sum(s["requests"]["ok"] for s in steps)
    return 0 if ok else 1


def capacity_line(c: dict[str, Any]) -> str:
    """The search's answer in one line: the highest passing rate, the bracket, why it stopped."""
    lo, hi = c["max_rate_rps"], c["lowest_failing_rps"]
    if lo is None:
        return f"bench: max sustainable rate: none found ({c['stopped_because']})"
    bracket = f"between {lo:.4g} and {hi:.4g} req/s (+{c['relative_uncertainty']:.0%})" if hi is not None else \
        f">= {lo:.4g} req/s (no failing rate found)"
    return (f"bench: max sustainable rate {lo:.4g} req/s at >= {c['goodput_fraction']:.0%} of requests within "
            f"SLO: the limit is {bracket}; {len(c['probes'])} probes in {c['spent_s']:.0f} s, stopped: "
            f"{c['stopped_because']}")


def summary_line(step: dict[str, Any]) -> str:
    m = step["metrics"]
    r = step["requests"]

    def f(d: dict[str, Any], key: str) -> str:
        return "-" if d[key] is None else f"{d[key]:.1f}"

    sources = ",".join(sorted(step.get("output_tokens_source") or {})) or "-"
    conns = step.get("connections") or {}
    extra = ""
    if conns.get("retries") or conns.get("stale_discarded"):
        extra = f" | {conns['retries']} retried, {conns['stale_discarded']} stale dropped"
    return (f"  {step['name']}: ok {r['ok']} error {r['error']} timeout {r['timeout']} | "
            f"TTFT p50 {f(m['ttft_ms'], 'p50')} p99 {f(m['ttft_ms'], 'p99')} ms | "
            f"ITL p50 {f(m['itl_ms'], 'p50')} ms | E2E p50 {f(m['e2e_ms'], 'p50')} ms | "
            f"{m['output_tokens_per_s']:.1f} tok/s ({sources}), {m['requests_per_s']:.2f} req/s{extra}")
