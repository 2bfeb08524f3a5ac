"""Locust users that benchmark an Ollama-compatible server and keep every raw per-request sample.

Usable with plain locust (web UI or headless); `ollama-conformance bench` runs it the same way, as a subprocess:

    locust -f load/locustfile.py --host http://127.0.0.1:11434 --model gemma3:270m \\
        --surface native --endpoint chat --output-tokens 64 -u 4 -r 4 -t 60s --headless \\
        --samples-dir out/            # one samples-HOST-PID.jsonl per locust process

Closed loop (default): each locust user sends its next request when the previous one ends (`-u` = concurrency).
Open loop: `--rate R --arrival poisson|gamma:K|constant` makes every user send at its share of R requests/s
(`--rate-users` = how many users share R; set it to `-u`), each request in its own greenlet at its intended
start; samples keep the intended start, so lateness (client queueing) is counted in TTFT and E2E and reported.

Distributed: `--master` plus `--worker --master-host H` processes, local or on other machines; every process that
runs users writes its own samples file into its `--samples-dir` (on other machines: a shared folder, or copy the
files back; each sample carries its process's own clock origin `t0_ns`, so files from different machines merge).

Locust's own statistics (web UI, CSVs) get one TTFT and one E2E entry per request; they are rounded by locust and
only for display: results come from the raw samples.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import resource
import socket
import time
from typing import Any, ClassVar

import gevent
from gevent.pool import Group
from locust import User, events
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from ollama_conformance.load.client import StreamClient
from ollama_conformance.load.endpoints import endpoint_spec, load_prompts
from ollama_conformance.load.schedule import inter_arrivals
from ollama_conformance.load.workloads import WorkloadOptions, parse_lengths, read_trace, request_source

LAG_PERIOD_S = 0.05


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    g = parser.add_argument_group("ollama-conformance bench")
    g.add_argument("--model", default="gemma3:270m", help="model name sent in every request")
    g.add_argument("--surface", default="native", choices=["native", "openai"])
    g.add_argument("--endpoint", default="chat", choices=["chat", "generate", "completions", "embed"])
    g.add_argument("--prompts", default="", help="prompts file (one per line, or JSONL with 'prompt')")
    g.add_argument("--input-tokens", type=int, default=16, help="synthetic prompt of about N tokens")
    g.add_argument("--output-tokens", type=int, default=0, help="cap on output tokens (0: server default)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed sent with requests (0: none)")
    g.add_argument("--rate", type=float, default=0.0, help="open loop: total requests/s (0: closed loop)")
    g.add_argument("--rate-users", type=int, default=1, help="open loop: how many users share --rate")
    g.add_argument("--arrival", default="poisson", help="open loop: poisson, constant or gamma:K")
    g.add_argument("--max-in-flight", type=int, default=1024, help="open loop: cap on in-flight requests per user")
    g.add_argument("--warmup", type=float, default=0.0, help="seconds at the start whose requests are excluded")
    g.add_argument("--window", type=float, default=0.0, help="seconds measured after warmup (0: until stopped)")
    g.add_argument("--max-requests", type=int, default=0, help="measured requests per process, then stop (0: no cap)")
    g.add_argument("--request-timeout", type=float, default=120.0, help="per-request time limit, seconds")
    g.add_argument("--step-name", default="run", help="label written into every sample")
    g.add_argument("--samples-dir", default="", help="folder for this process's samples and health files")
    g.add_argument("--bearer-env", default="", help="name of an environment variable holding a Bearer API key")
    g.add_argument("--no-reuse", action="store_true", help="a new connection per request (Connection: close)")
    g.add_argument("--workload", default="single", choices=["single", "multi-turn", "trace"])
    g.add_argument("--input-lengths", default="", help="synthetic prompt lengths: N, uniform:A,B or normal:M,SD")
    g.add_argument("--output-lengths", default="", help="output caps per request: N, uniform:A,B or normal:M,SD")
    g.add_argument("--turns", type=int, default=4, help="multi-turn: turns per conversation")
    g.add_argument("--system-prompt-tokens", type=int, default=0, help="multi-turn: shared system prompt length")
    g.add_argument("--trace", default="", help="trace: JSONL (ours, Mooncake) or BurstGPT CSV file")
    g.add_argument("--trace-speed", type=float, default=1.0, help="trace: replay speed (2: twice as fast)")


class _Process:
    """This locust process's run: clock origin, request quota, output files, health figures."""

    def __init__(self) -> None:
        self.t0_ns: int | None = None
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.started = 0
        self.active_users = 0
        self.samples_file: Any = None
        self.lag_ms: list[float] = []
        self.cpu0 = 0.0
        self.wall0 = 0.0
        self.finished = False

    def begin(self) -> None:
        if self.t0_ns is None:
            self.t0_ns = time.perf_counter_ns()
            self.wall0 = time.perf_counter()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.cpu0 = usage.ru_utime + usage.ru_stime
            gevent.spawn(self._lag_monitor)

    def _lag_monitor(self) -> None:
        # greenlet/event-loop lag: how late a 50 ms sleep wakes up
        while not self.finished:
            t = time.perf_counter()
            gevent.sleep(LAG_PERIOD_S)
            self.lag_ms.append((time.perf_counter() - t - LAG_PERIOD_S) * 1000.0)

    def write(self, options: Any, sample: dict[str, Any]) -> None:
        if not options.samples_dir:
            return
        if self.samples_file is None:
            os.makedirs(options.samples_dir, exist_ok=True)
            path = os.path.join(options.samples_dir, f"samples-{self.worker}.jsonl")
            self.samples_file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (open for the run)
        self.samples_file.write(json.dumps(sample, separators=(",", ":")) + "\n")

    def finish(self, options: Any) -> None:
        if self.finished or self.t0_ns is None:
            return
        self.finished = True
        usage = resource.getrusage(resource.RUSAGE_SELF)
        health = {
            "worker": self.worker,
            "cpu_s": usage.ru_utime + usage.ru_stime - self.cpu0,
            "wall_s": time.perf_counter() - self.wall0,
            "loop_lag_ms": self.lag_ms,
        }
        if self.samples_file is not None:
            self.samples_file.close()
        if options.samples_dir:
            os.makedirs(options.samples_dir, exist_ok=True)
            with open(os.path.join(options.samples_dir, f"health-{self.worker}.json"), "w", encoding="utf-8") as f:
                json.dump(health, f)


PROCESS = _Process()


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    if environment.parsed_options is not None:
        PROCESS.finish(environment.parsed_options)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Everything imported so far (locust, gevent, ...) lives for the whole run: moving it out of the collector's
    # generations keeps full collections short, so they do not stall the loop while streams are being stamped.
    gc.collect()
    gc.freeze()
    if isinstance(environment.runner, MasterRunner):
        done_workers: set[str] = set()

        def on_done(msg: Any, **__: Any) -> None:
            done_workers.add(msg.node_id)
            if len(done_workers) >= environment.runner.worker_count:
                gevent.spawn(environment.runner.quit)

        environment.runner.register_message("bench_done", on_done)


def _process_done(environment: Any) -> None:
    """Every user of this process has finished: end a local run now; tell the master from a worker."""
    PROCESS.finish(environment.parsed_options)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message("bench_done", None)
    elif isinstance(runner, LocalRunner):
        gevent.spawn(runner.quit)


class BenchUser(User):
    """One closed-loop stream, or (with --rate) one open-loop sender of its share of the arrivals."""

    _ids: ClassVar[itertools.count] = itertools.count()

    def on_start(self) -> None:
        o = self.environment.parsed_options
        PROCESS.begin()
        PROCESS.active_users += 1
        self.options = o
        headers = {}
        if o.bearer_env and os.environ.get(o.bearer_env):
            headers["Authorization"] = f"Bearer {os.environ[o.bearer_env]}"
        self.client = StreamClient(self.host, o.request_timeout, headers, reuse=not o.no_reuse)
        self.spec = endpoint_spec(o.surface, o.endpoint, o.model, o.output_tokens or None, o.seed or None)
        self.index = next(self._ids)
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        workload = WorkloadOptions(
            kind=o.workload, prompts=load_prompts(o.prompts or None, o.input_tokens),
            input_lengths=parse_lengths(o.input_lengths or None, "--input-lengths"),
            output_lengths=parse_lengths(o.output_lengths or None, "--output-lengths"), turns=o.turns,
            system_prompt_tokens=o.system_prompt_tokens, trace=read_trace(o.trace) if o.trace else [],
            trace_speed=o.trace_speed)
        # open loop: one user per process, numbered by worker; closed loop: the users of this process
        self.open_loop = o.rate > 0 or o.workload == "trace"
        user = worker_index + self.index
        self.source = request_source(self.spec, workload, user, max(o.rate_users, 1) if self.open_loop else 1,
                                     (o.seed or 1) * 100 + worker_index)
        assert PROCESS.t0_ns is not None
        self.warmup_end = PROCESS.t0_ns + int(o.warmup * 1e9)
        self.window_end = self.warmup_end + int(o.window * 1e9) if o.window > 0 else None
        self.inflight = Group()
        self.done = False
        self.next_ns: int | None = None
        if self.open_loop:
            gaps = self.source.arrivals()
            if gaps is None:
                share = o.rate / max(o.rate_users, 1)
                # each user of each worker draws its own (reproducible) arrivals: the master numbers its workers
                seed = (o.seed or 1) * 100_000 + worker_index * 1000 + self.index
                gaps = inter_arrivals(share, o.arrival, seed=seed)
            self.gaps = gaps
            first = next(self.gaps, None)
            self.next_ns = None if first is None else time.perf_counter_ns() + int(first * 1e9)

    def wait_time(self) -> float:
        if self.open_loop and not self.done and self.next_ns is not None:
            return max(0.0, (self.next_ns - time.perf_counter_ns()) / 1e9)
        return 0.0

    def _claim(self, intended_ns: int) -> dict[str, Any] | None:
        """Flags for a request starting at `intended_ns`, or None when this user has no more to send."""
        warmup = intended_ns < self.warmup_end
        if self.window_end is not None and intended_ns >= self.window_end:
            return None
        if not warmup and self.options.max_requests:
            if PROCESS.started >= self.options.max_requests:
                return None
            PROCESS.started += 1
        return {"warmup": warmup}

    def _one(self, intended_ns: int, flags: dict[str, Any]) -> None:
        body, labels = self.source.next_request()
        sample = self.client.measure(self.spec, body, intended_ns, keep_text=self.source.keeps_text)
        self.source.on_result(sample, self.client.last_text)
        sample.update(flags, **labels, step=self.options.step_name, worker=PROCESS.worker, t0_ns=PROCESS.t0_ns,
                      endpoint=self.spec.path)
        PROCESS.write(self.options, sample)
        self._report(sample)

    def _report(self, sample: dict[str, Any]) -> None:
        fire = self.environment.events.request.fire
        exc = None if sample["status"] == "ok" else RuntimeError(sample["error"])
        fire(request_type="E2E", name=self.spec.path, response_time=sample["e2e_ms"] or 0.0,
             response_length=sample.get("output_tokens") or 0, exception=exc, context={})
        if sample["ttft_ms"] is not None:
            fire(request_type="TTFT", name=self.spec.path, response_time=sample["ttft_ms"],
                 response_length=0, exception=None, context={})

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.inflight.join(timeout=self.options.request_timeout + 5)
        self.client.close()
        PROCESS.active_users -= 1
        if PROCESS.active_users == 0:
            _process_done(self.environment)

    def on_stop(self) -> None:
        if not self.done:
            self.inflight.kill(block=True, timeout=5)
            self._finish()

    def _stop(self) -> None:
        self._finish()
        raise StopUser()

    def _step(self) -> None:
        if self.done:
            raise StopUser()
        if self.open_loop:
            if self.next_ns is None:  # a trace's share is over
                self._stop()
            intended = self.next_ns
            gap = next(self.gaps, None)
            self.next_ns = None if gap is None else intended + int(gap * 1e9)
            flags = self._claim(intended)
            if flags is None:
                self._stop()
            early = (intended - time.perf_counter_ns()) / 1e9
            if early > 0:  # locust runs a user's first task before any wait_time
                gevent.sleep(early)
            while len(self.inflight) >= self.options.max_in_flight:  # the cap makes sends late: counted as lateness
                gevent.sleep(0.001)
            self.inflight.spawn(self._one, intended, flags)
        else:
            intended = time.perf_counter_ns()
            flags = self._claim(intended)
            if flags is None:
                self._stop()
            self._one(intended, flags)

    tasks: ClassVar[list[Any]] = [lambda user: user._step()]
