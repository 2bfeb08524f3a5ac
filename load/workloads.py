"""What each request of a run asks for: single prompts, multi-turn conversations, trace replay, length distributions.

A workload hands each locust user a `RequestSource`; the user asks it for the next request body (and its labels,
written into the sample) and reports the result back, so a conversation can grow its history with the answer the
server actually streamed (what a prefix-caching server has in its cache).

- single (default): the prompts file, or a synthetic prompt whose length comes from `--input-tokens N` or a
  distribution; output caps likewise from `--output-tokens`.
- multi-turn (closed loop): each user holds a conversation of `--turns K` turns; every turn resends the whole grown
  history (system prompt, earlier user turns, the server's own answers) plus a new user turn; all users share one
  system prompt of `--system-prompt-tokens S` tokens, the common prefix prefix-caching servers are judged on.
- trace (open loop): requests from a JSONL trace at the trace's own arrival times (see `read_trace`).

Lengths (`--input-tokens`, `--output-tokens`): `N` or `fixed:N`, `uniform:A,B` (inclusive), `normal:MEAN,SD`
(rounded, at least 1). Synthetic prompts are built from words that are one token in common tokenizers, so their
length in tokens is close to the one asked (servers differ by a few tokens of template).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_conformance.errors import UsageError
from ollama_conformance.load.endpoints import FILLER_WORD, EndpointSpec

WORKLOADS = ("single", "multi-turn", "trace")
SYSTEM_PREAMBLE = "You are a helpful assistant. Reference notes follow:"
MOONCAKE_BLOCK_TOKENS = 512  # Mooncake traces: one hash id per block of 512 prompt tokens
VOCABULARY = (" hello", " world", " apple", " river", " green", " house", " music", " water", " light", " stone")


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts: fixed N, uniform over [a, b], or normal(mean, sd) clipped at 1."""

    kind: str
    a: float
    b: float = 0.0

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return int(self.a)
        if self.kind == "uniform":
            return rng.randint(int(self.a), int(self.b))
        return max(1, round(rng.gauss(self.a, self.b)))

    @property
    def mean(self) -> float:
        return self.a if self.kind != "uniform" else (self.a + self.b) / 2

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{int(self.a)}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


def parse_lengths(text: str | int | None, option: str) -> Lengths | None:
    """'128' | 'fixed:128' | 'uniform:64,256' | 'normal:128,32' -> Lengths (None stays None)."""
    if text is None:
        return None
    raw = str(text).strip()
    kind, sep, rest = raw.partition(":")
    if not sep:
        kind, rest = "fixed", raw
    try:
        values = [float(v) for v in rest.replace("-", ",", 1).split(",")] if kind == "uniform" else \
            [float(v) for v in rest.split(",")]
    except ValueError:
        values = []
    bad = f"invalid {option} {raw!r}: use N, fixed:N, uniform:A,B or normal:MEAN,SD (token counts >= 1)"
    if kind == "fixed" and len(values) == 1 and values[0] >= 1 and values[0] == int(values[0]):
        return Lengths("fixed", values[0])
    if kind == "uniform" and len(values) == 2 and 1 <= values[0] <= values[1]:
        return Lengths("uniform", values[0], values[1])
    if kind == "normal" and len(values) == 2 and values[0] >= 1 and values[1] >= 0:
        return Lengths("normal", values[0], values[1])
    raise UsageError(bad)


def filler(n_tokens: int, seed: int = 0) -> str:
    """About `n_tokens` tokens of one-token words; different seeds give different texts of the same length."""
    if seed == 0:
        return FILLER_WORD * n_tokens
    rng = random.Random(seed)
    return "".join(rng.choice(VOCABULARY) for _ in range(n_tokens))


def synthetic_prompt(n_tokens: int, seed: int = 0) -> str:
    return "Count:" + filler(max(n_tokens - 1, 0), seed)


@dataclass
class TraceEntry:
    """One request of a trace: when (seconds after the trace's first), what to send, how much to ask back."""

    at_s: float
    prompt: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    hash_ids: list[int] = field(default_factory=list)


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if obj.get(k) is not None:
            return obj[k]
    return None


def _entry(obj: dict[str, Any], where: str) -> TraceEntry:
    """A trace line in our fields, Mooncake's or BurstGPT's (see `read_trace`)."""
    t_ms = _first(obj, "timestamp")  # Mooncake: milliseconds since the trace start
    t_s = _first(obj, "at_s", "Timestamp", "time")  # ours / BurstGPT: seconds
    at = t_s if t_s is not None else (t_ms / 1000.0 if isinstance(t_ms, (int, float)) else None)
    if not isinstance(at, (int, float)) or at < 0:
        raise UsageError(f"{where}: needs an arrival time: at_s (s), timestamp (ms, Mooncake) or Timestamp (s, BurstGPT)")
    prompt = _first(obj, "prompt")
    n_in = _first(obj, "input_tokens", "input_length", "Request tokens")
    n_out = _first(obj, "output_tokens", "output_length", "Response tokens")
    hash_ids = obj.get("hash_ids") or []
    if prompt is not None and not isinstance(prompt, str):
        raise UsageError(f"{where}: prompt must be a string")
    if prompt is None and not (isinstance(n_in, (int, float)) and n_in >= 1):
        raise UsageError(f"{where}: needs a prompt or input tokens (input_tokens, input_length, Request tokens) >= 1")
    if n_out is not None and not (isinstance(n_out, (int, float)) and n_out >= 0):
        raise UsageError(f"{where}: output tokens must be a number >= 0")
    if not isinstance(hash_ids, list) or not all(isinstance(h, int) for h in hash_ids):
        raise UsageError(f"{where}: hash_ids must be a list of integers")
    return TraceEntry(at_s=float(at), prompt=prompt, input_tokens=None if n_in is None else int(n_in),
                      output_tokens=None if not n_out else int(n_out), hash_ids=hash_ids)


def read_trace(path: str) -> list[TraceEntry]:
    """A trace file: JSONL (one request per line) or the BurstGPT CSV; sorted by arrival, times from the first.

    Fields (first present wins): arrival `at_s` (seconds) | `timestamp` (ms, Mooncake) | `Timestamp` (s, BurstGPT);
    input `prompt` (text) | `input_tokens` | `input_length` (Mooncake) | `Request tokens` (BurstGPT); output cap
    `output_tokens` | `output_length` (Mooncake) | `Response tokens` (BurstGPT); Mooncake's `hash_ids` (one id per
    512-token block) make requests that share ids share that prompt prefix. BurstGPT rows with 0 response tokens
    (failed requests in the original log) ask for the server's default length.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"trace {path} is not UTF-8 text") from None
    entries: list[TraceEntry] = []
    if file.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, 2):
            try:
                obj = {k: float(v) for k, v in row.items() if k in ("Timestamp", "Request tokens", "Response tokens")}
            except (TypeError, ValueError):
                raise UsageError(f"{path}:{number}: Timestamp, Request tokens and Response tokens must be numbers") \
                    from None
            entries.append(_entry(obj, f"{path}:{number}"))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}:{number}: invalid JSON line") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{number}: a trace line must be a JSON object")
            entries.append(_entry(obj, f"{path}:{number}"))
    if not entries:
        raise UsageError(f"trace {path} holds no request")
    entries.sort(key=lambda e: e.at_s)
    t0 = entries[0].at_s
    for e in entries:
        e.at_s -= t0
    return entries


def trace_prompt(entry: TraceEntry) -> str:
    """The entry's text, or a synthetic prompt; Mooncake hash ids become shared 512-token blocks (shared prefixes)."""
    if entry.prompt is not None:
        return entry.prompt
    n = entry.input_tokens or 1
    if not entry.hash_ids:
        return synthetic_prompt(n)
    block = max(1, -(-n // len(entry.hash_ids)))
    blocks = [filler(min(block, MOONCAKE_BLOCK_TOKENS), seed=h + 1) for h in entry.hash_ids]
    return "Count:" + "".join(blocks)


@dataclass(frozen=True)
class WorkloadOptions:
    """The workload part of the bench options, as the locust processes receive them."""

    kind: str = "single"
    prompts: list[str] = field(default_factory=list)
    input_lengths: Lengths | None = None
    output_lengths: Lengths | None = None
    turns: int = 4
    system_prompt_tokens: int = 0
    trace: list[TraceEntry] = field(default_factory=list)
    trace_speed: float = 1.0


class RequestSource:
    """One user's stream of requests: single prompts, one conversation after another, or its share of a trace."""

    keeps_text = False

    def __init__(self, spec: EndpointSpec, w: WorkloadOptions, user: int, users: int, seed: int) -> None:
        self.spec = spec
        self.w = w
        self.user = user
        self.users = max(users, 1)
        self.rng = random.Random(seed * 1_000_003 + user)
        self.n = user

    def next_request(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(body, labels for the sample)."""
        w = self.w
        labels: dict[str, Any] = {}
        if w.input_lengths is not None:
            n_in = w.input_lengths.draw(self.rng)
            prompt = synthetic_prompt(n_in, seed=self.rng.randrange(1, 1 << 30))
            labels["input_tokens_asked"] = n_in
        else:
            prompt = w.prompts[self.n % len(w.prompts)]
        self.n += 1
        out = w.output_lengths.draw(self.rng) if w.output_lengths is not None else None
        if out is not None:
            labels["output_tokens_asked"] = out
        return self.spec.body(prompt, output_tokens=out), labels

    def on_result(self, sample: dict[str, Any], text: str | None) -> None:
        """A request ended (whatever its status)."""

    def arrivals(self) -> Iterator[float] | None:
        """Open-loop gaps in seconds dictated by the workload (a trace), or None to use --rate."""
        return None


class Conversations(RequestSource):
    """Closed loop: one conversation of `turns` turns after another; each turn resends the grown history."""

    keeps_text = True

    def __init__(self, spec: EndpointSpec, w: WorkloadOptions, user: int, users: int, seed: int) -> None:
        super().__init__(spec, w, user, users, seed)
        # the same system prompt for every user of every process: a prefix shared across conversations
        self.system = SYSTEM_PREAMBLE + filler(w.system_prompt_tokens, seed=7) if w.system_prompt_tokens else None
        self.conversation = -1
        self.turn = w.turns
        self.history: list[dict[str, str]] = []

    def next_request(self) -> tuple[dict[str, Any], dict[str, Any]]:
        w = self.w
        if self.turn >= w.turns:
            self.conversation += 1
            self.turn = 0
            self.history = [{"role": "system", "content": self.system}] if self.system else []
        n_in = w.input_lengths.draw(self.rng) if w.input_lengths is not None else 16
        text = f"Turn {self.turn + 1}:" + filler(max(n_in - 2, 1), seed=self.rng.randrange(1, 1 << 30))
        self.history.append({"role": "user", "content": text})
        out = w.output_lengths.draw(self.rng) if w.output_lengths is not None else None
        labels = {"conversation": f"u{self.user}-c{self.conversation}", "turn": self.turn + 1,
                  "history_messages": len(self.history)}
        if out is not None:
            labels["output_tokens_asked"] = out
        self.turn += 1
        return self.spec.body(text, output_tokens=out, messages=list(self.history)), labels

    def on_result(self, sample: dict[str, Any], text: str | None) -> None:
        if sample.get("status") != "ok" or text is None:
            self.turn = self.w.turns  # a failed turn ends the conversation: its history has no answer to resend
            return
        self.history.append({"role": "assistant", "content": text})


class TraceShare(RequestSource):
    """Open loop: this user's share of the trace (every `users`-th entry), at the trace's times / speed."""

    def __init__(self, spec: EndpointSpec, w: WorkloadOptions, user: int, users: int, seed: int) -> None:
        super().__init__(spec, w, user, users, seed)
        self.entries = w.trace[user::self.users]
        self.index = 0

    def arrivals(self) -> Iterator[float]:
        previous = 0.0
        for e in self.entries:
            yield (e.at_s - previous) / self.w.trace_speed
            previous = e.at_s

    def next_request(self) -> tuple[dict[str, Any], dict[str, Any]]:
        e = self.entries[self.index % len(self.entries)]
        self.index += 1
        labels: dict[str, Any] = {"trace_at_s": e.at_s}
        if e.input_tokens is not None:
            labels["input_tokens_asked"] = e.input_tokens
        if e.output_tokens is not None:
            labels["output_tokens_asked"] = e.output_tokens
        return self.spec.body(trace_prompt(e), output_tokens=e.output_tokens), labels


def request_source(spec: EndpointSpec, w: WorkloadOptions, user: int, users: int, seed: int) -> RequestSource:
    if w.kind == "multi-turn":
        return Conversations(spec, w, user, users, seed)
    if w.kind == "trace":
        return TraceShare(spec, w, user, users, seed)
    return RequestSource(spec, w, user, users, seed)


def check_workload(kind: str, endpoint: str, rate: bool, turns: int, system_prompt_tokens: int, trace: str | None,
                   trace_speed: float) -> None:
    """Usage errors of the workload options, before anything runs."""
    if kind not in WORKLOADS:
        raise UsageError(f"unknown workload {kind!r} ({', '.join(WORKLOADS)})")
    if kind == "multi-turn":
        if endpoint != "chat":
            raise UsageError("--workload multi-turn needs --endpoint chat (it sends a message history)")
        if rate:
            raise UsageError("--workload multi-turn is a closed loop: use --concurrency (each user is a conversation)")
        if turns < 1 or system_prompt_tokens < 0:
            raise UsageError("--turns must be >= 1 and --system-prompt-tokens >= 0")
    if kind == "trace":
        if not trace:
            raise UsageError("--workload trace needs --trace FILE")
        if trace_speed <= 0:
            raise UsageError("--trace-speed must be > 0")
        if endpoint == "embed":
            raise UsageError("--workload trace replays generation requests: not with --endpoint embed")
        read_trace(trace)
    elif trace:
        raise UsageError("--trace is for --workload trace")
