"""The text-generation runner: one decode loop per loaded model, on the process's compute thread (engine.compute),
OLLAMA_NUM_PARALLEL slots decoded as a batch.

Requests wait in a bounded queue; each round of the loop admits them into free slots (prefill), then runs one
batched decode step for every active sequence, samples each, and hands each token's text to the request's asyncio
queue. A cancelled request (client gone) leaves its slot before the next step. Text is emitted incrementally: bytes
of an unfinished UTF-8 character, and text that may be the start of a stop sequence, are held back until resolved.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ollama_conformance.reference_backend.engine import compute as compute_thread
from ollama_conformance.reference_backend.engine.model import Gemma3, KVCache, StaticSlots
from ollama_conformance.reference_backend.engine.options import Options
from ollama_conformance.reference_backend.engine.sampling import Sampler, log_softmax_top

log = logging.getLogger("ollama_conformance.reference_backend.engine")


class QueueFull(Exception):
    """More requests are waiting than OLLAMA_MAX_QUEUE allows."""


class Constraint(Protocol):
    """A grammar that limits which tokens may come next (format / tool-call arguments)."""

    def mask(self, logits: torch.Tensor) -> torch.Tensor: ...
    def accept(self, token: int) -> None: ...
    def is_terminated(self) -> bool: ...


@dataclass
class TokenEvent:
    text: str
    token_ids: list[int]
    logprobs: list[dict[str, Any]]


@dataclass
class DoneEvent:
    done_reason: str  # "stop" | "length"
    prompt_eval_count: int
    prompt_eval_duration_ns: int
    eval_count: int
    eval_duration_ns: int
    output_tokens: list[int]


@dataclass
class ErrorEvent:
    message: str


Event = TokenEvent | DoneEvent | ErrorEvent


@dataclass
class GenerationRequest:
    prompt_tokens: list[int]
    options: Options
    num_ctx: int
    stop_token_ids: frozenset[int]
    logprobs: bool = False
    top_logprobs: int = 0
    constraint_factory: Callable[[], Constraint | None] | None = None
    shift: bool = True  # on a full context: shift (Ollama's default) or stop with "length"
    # set by the runner
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue[Event] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event) -> None:
        assert self.loop is not None and self.events is not None
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.cancelled.set()


class TextStream:
    """Incremental detokenization with stop sequences: what can be emitted now, and whether a stop matched."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.tokens: list[int] = []
        self.emitted = ""  # text already sent
        self.decoded_len = 0  # length of the decoded text already accounted for (sent or withheld for a stop)

    def push(self, token: int) -> tuple[str, bool]:
        """Add a token; returns (text to send now, stop sequence matched)."""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return "", False  # an unfinished multi-byte character
        pending = text[len(self.emitted) :]
        for stop in self.stops:
            index = pending.find(stop)
            if index >= 0:
                out = pending[:index]
                self.emitted += out
                return out, True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(pending)), 0, -1):
                if pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        out = pending[: len(pending) - hold]
        self.emitted += out
        return out, False

    def flush(self) -> str:
        """At the end (length / stop token): the held-back text that never became a stop sequence."""
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=False).rstrip("\ufffd")
        out = text[len(self.emitted) :]
        self.emitted += out
        return out


@dataclass
class Sequence:
    request: GenerationRequest
    cache: KVCache | None  # the sequence's own cache (dynamic path), None when it lives in a static slot
    sampler: Sampler
    stream: TextStream
    constraint: Constraint | None
    history: list[int]
    started_ns: int
    prompt_eval_ns: int = 0
    first_token_ns: int = 0
    generated: list[int] = field(default_factory=list)
    next_token: int = -1  # sampled, not yet fed to the model
    slot: int = -1  # its slot in StaticSlots (static path)
    length: int = 0  # tokens in its KV cache
    shifted: bool = False  # a context shift rebuilt its cache (it no longer holds history[:length])
    # context shifts drop tokens right after the kept head, so the cache holds history[:keep] +
    # history[keep + evicted : evicted + length]: `evicted` counts the history tokens shifted out
    evicted: int = 0


class TextRunner:
    """Owns the model weights and the decode loop of one loaded text model."""

    def __init__(
        self,
        model: Gemma3,
        tokenizer: Any,
        *,
        num_parallel: int,
        max_queue: int,
        static_context: int = 0,
        use_cuda_graph: bool = False,
        growable: bool = True,
        compute: compute_thread.ComputeThread | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.num_parallel = max(1, num_parallel)
        self.max_queue = max_queue
        # static_context > 0: one KV cache for all slots, decoded with batched attention (on CUDA replayed as a
        # CUDA graph; on CPU, when growable, allocated as sequences grow); 0: a cache per sequence
        self.static = (
            StaticSlots(model, self.num_parallel, static_context, use_cuda_graph=use_cuda_graph, growable=growable)
            if static_context > 0
            else None
        )
        self.free_slots = list(range(self.num_parallel))
        # what each slot's KV cache holds (tokens), kept after its sequence ends: a prompt that shares a prefix
        # with it computes only the rest (Ollama's runner reuses its slots' caches the same way)
        self.slot_tokens: list[list[int]] = [[] for _ in range(self.num_parallel)]
        self.waiting: queue.Queue[GenerationRequest] = queue.Queue()
        self.active: list[Sequence] = []
        self.lock = threading.Lock()
        self.compute = compute or compute_thread.shared()
        self.compute.add_loop(self._tick)

    # --- called from the event loop -------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> asyncio.Queue[Event]:
        with self.lock:
            busy = len(self.active) >= self.num_parallel
            if busy and self.queued() >= self.max_queue:
                raise QueueFull()
            request.loop = asyncio.get_running_loop()
            request.events = asyncio.Queue()
            self.waiting.put(request)
        self.compute.wake()
        return request.events

    def queued(self) -> int:
        """Requests waiting for a slot (those whose client has gone no longer count)."""
        with self.waiting.mutex:
            return sum(1 for r in self.waiting.queue if r is not None and not r.cancelled.is_set())

    def stop(self) -> None:
        """Ends the decode loop (after the round in progress); the requests in flight get no more events."""
        self.compute.remove_loop(self._tick)

    # --- the decode loop, on the compute thread -------------------------------------------------------------
    def _tick(self) -> bool:
        """One round: drop cancelled sequences, admit waiting requests into the free slots, decode one token for
        each active sequence. True while sequences are active or requests wait (the compute thread idles when no
        loop has work)."""
        try:
            self.active = [s for s in self.active if not self._finish_if_cancelled(s)]
            self._admit()
            if self.active:
                self._step()
        except Exception as exc:  # a bug or an engine failure: fail the requests in flight, keep serving
            log.exception("engine step failed")
            for seq in self.active:
                self._release(seq)
                seq.request.emit(ErrorEvent(f"an error was encountered while running the model: {exc}"))
            self.active = []
        return bool(self.active) or not self.waiting.empty()

    def _admit(self) -> None:
        while len(self.active) < self.num_parallel:
            try:
                request = self.waiting.get_nowait()
            except queue.Empty:
                return
            if request.cancelled.is_set():
                continue
            try:
                seq = self._prefill(request)
            except Exception as exc:
                log.exception("prefill failed")
                request.emit(ErrorEvent(f"an error was encountered while running the model: {exc}"))
                continue
            if seq is not None:
                self.active.append(seq)

    def _finish_if_cancelled(self, seq: Sequence) -> bool:
        if seq.request.cancelled.is_set():
            self._release(seq)
            return True
        return False

    def _release(self, seq: Sequence) -> None:
        if seq.slot >= 0:
            # the slot's cache holds the first seq.length tokens of the history (unless a shift rebuilt it)
            self.slot_tokens[seq.slot] = [] if seq.shifted else seq.history[: seq.length]
            self.free_slots.append(seq.slot)
            seq.slot = -1
        seq.cache = None

    def _pick_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with `prompt` (lowest slot on a tie, so the
        busy slots stay a prefix of the table), and that prefix's length, at most len(prompt) - 1 (the last
        prompt token is always computed: its logits give the first token)."""
        best, best_shared = min(self.free_slots), 0
        for slot in sorted(self.free_slots):
            cached = self.slot_tokens[slot]
            shared = 0
            for a, b in zip(cached, prompt[:-1], strict=False):
                if a != b:
                    break
                shared += 1
            if shared > best_shared:
                best, best_shared = slot, shared
        return best, best_shared

    def _prefill(self, request: GenerationRequest) -> Sequence | None:
        started = time.perf_counter_ns()
        if self.static is not None:
            request.num_ctx = min(request.num_ctx, self.static.context)
        prompt = request.prompt_tokens
        slot = -1
        if self.static is not None:
            if len(prompt) >= self.static.context:  # the slot is kept free
                raise ValueError(f"sequence of {len(prompt)} tokens does not fit a {self.static.context}-token slot")
            slot, reused = self._pick_slot(prompt)
            self.slot_tokens[slot] = []  # overwritten from `reused` on
            cache = self.static.cache_of(slot, reused, room=len(prompt) + 1)
            logits = self.model.prefill(prompt[reused:], cache)[-1]
            head_row = self._head_row(-1)
            self.static.set_length(slot, cache.length)
            self.free_slots.remove(slot)
        else:
            cache = self.model.new_cache(min(request.num_ctx, len(prompt) + 256))
            logits = self.model.prefill(prompt, cache)[-1]
            head_row = self._head_row(-1)
        try:
            seq = Sequence(
                request=request,
                cache=None if self.static is not None else cache,
                slot=slot,
                length=cache.length,
                sampler=Sampler(request.options),
                stream=TextStream(self.tokenizer, request.options.stop),
                constraint=request.constraint_factory() if request.constraint_factory else None,
                history=list(request.prompt_tokens),
                started_ns=started,
            )
        except BaseException:
            if slot >= 0:  # a request that fails here must not keep its slot: with one slot, every later one failed
                self.slot_tokens[slot] = []
                self.free_slots.append(slot)
            raise
        seq.prompt_eval_ns = time.perf_counter_ns() - started
        return seq if self._consume(seq, logits, head_row) else None

    def _step(self) -> None:
        batch = self.active
        if self.static is not None:
            by_slot = self.static.decode({s.slot: s.next_token for s in batch})
            rows = [by_slot[s.slot] for s in batch]
            head_rows = [self._head_row(s.slot) for s in batch]  # the slot table's row i is slot i
            for slot in self.free_slots:  # an idle slot the step ran on lost its cached position 0
                if slot < self.static.last_rows:
                    self.slot_tokens[slot] = []
        else:
            caches = [s.cache for s in batch]
            assert all(c is not None for c in caches)
            logits = self.model.decode([s.next_token for s in batch], caches)  # type: ignore[arg-type]
            rows = [logits[i] for i in range(len(batch))]
            head_rows = [self._head_row(i) for i in range(len(batch))]
        for seq in batch:
            seq.length += 1
        self.active = [
            seq for seq, row, head_row in zip(batch, rows, head_rows, strict=True) if self._consume(seq, row, head_row)
        ]

    def _head_row(self, row: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(normed hidden state, the logits' error bounds) of a row of the last logits, when the model's LM head
        is approximate (engine.model.RescoredHead); None when its logits are the exact ones."""
        rows = self.model.head_rows
        if rows is None:
            return None
        hidden, bound = rows
        return hidden[row], bound[row]

    def _consume(self, seq: Sequence, logits: torch.Tensor, head_row: tuple[torch.Tensor, torch.Tensor] | None) -> bool:
        """Sample the next token from `logits`, emit its text; False when the sequence has finished. With an
        approximate LM head (`head_row`), the tokens the draw can pick are recomputed exactly first."""
        request = seq.request
        if request.cancelled.is_set():
            self._release(seq)
            return False
        gain = seq.sampler.penalty_gain()
        if head_row is not None and (request.logprobs or request.top_logprobs or math.isinf(gain)):
            logits = self.model.exact_logits(head_row[0])  # log-probabilities normalize over every token
            head_row = None
        if seq.constraint is not None:
            logits = seq.constraint.mask(logits)
        if head_row is not None:
            # the draw over the tokens that can rank among those it draws from, with their fp32 logits
            hidden, bound = head_row
            vocab = logits.shape[0]
            ids, exact = self.model.candidates(
                logits,
                bound,
                hidden,
                seq.sampler.ranks_drawn(vocab),
                gain,
                rank=lambda ids, values: seq.sampler.penalize(values, seq.history, ids),
                penalized=seq.sampler.penalized_tokens(seq.history),
            )
            token = seq.sampler.sample(exact, seq.history, ids=ids, vocab=vocab)
        else:
            token = seq.sampler.sample(logits, seq.history)
        now = time.perf_counter_ns()
        if not seq.first_token_ns:
            seq.first_token_ns = now
        seq.generated.append(token)
        seq.history.append(token)
        if seq.constraint is not None:
            seq.constraint.accept(token)
        logprobs: list[dict[str, Any]] = []
        if request.logprobs or request.top_logprobs:
            logprobs = [self._logprob_entry(logits, token, request.top_logprobs)]
        if token in request.stop_token_ids:
            return self._done(seq, "stop", logprobs)
        text, stopped = seq.stream.push(token)
        if text or logprobs:
            request.emit(TokenEvent(text=text, token_ids=[token], logprobs=logprobs))
        if stopped:
            return self._done(seq, "stop", [], flush=False)
        if seq.constraint is not None and seq.constraint.is_terminated():
            return self._done(seq, "stop", [])
        num_predict = request.options.num_predict
        if num_predict >= 0 and len(seq.generated) >= num_predict:
            return self._done(seq, "length", [])
        if seq.length + 1 >= request.num_ctx:
            if not request.shift:
                return self._done(seq, "length", [])
            self._shift_context(seq)
        seq.next_token = token
        return True

    def _shift_context(self, seq: Sequence) -> None:
        """llama.cpp's context shift as Ollama's llama-server runs it: keep the first num_keep tokens (plus BOS),
        drop half of the rest of the cache, go on generating; any number of times. Positions change, so the kept
        tokens are prefilled again into a fresh cache."""
        seq.shifted = True  # from here the slot's cache no longer holds history[:length], even if this fails
        keep = self._shift_keep(seq)
        cached = seq.history[:keep] + seq.history[keep + seq.evicted : seq.evicted + seq.length]
        discard = max(1, (len(cached) - keep) // 2)
        kept = cached[:keep] + cached[keep + discard :]
        # in inference mode: a slot table grown during a step holds inference tensors, updated in place here
        with torch.inference_mode():
            cache = self.model.new_cache(seq.request.num_ctx)
            self.model.prefill(kept, cache)
            if self.static is not None:
                self.static.load(seq.slot, cache)
            else:
                seq.cache = cache
        seq.length = cache.length
        seq.evicted += discard
        log.info("context shift: kept %d of %d tokens", len(kept), len(cached))

    def _shift_keep(self, seq: Sequence) -> int:
        """n_keep: num_keep (all the prompt when negative) plus the BOS token, leaving room to discard."""
        num_keep = seq.request.options.num_keep
        keep = len(seq.request.prompt_tokens) if num_keep < 0 else num_keep
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is not None and seq.history[:1] == [bos]:
            keep += 1
        return max(0, min(keep, seq.request.num_ctx - 2))

    def _logprob_entry(self, logits: torch.Tensor, token: int, top: int) -> dict[str, Any]:
        chosen, alternatives = log_softmax_top(logits, token, top)
        entry = self._token_info(token, chosen)
        if top:
            entry["top_logprobs"] = [self._token_info(t, lp) for t, lp in alternatives]
        return entry

    def _token_info(self, token: int, logprob: float) -> dict[str, Any]:
        piece = self.tokenizer.convert_ids_to_tokens(token)
        text = self.tokenizer.convert_tokens_to_string([piece]) if piece is not None else ""
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    def _done(self, seq: Sequence, reason: str, logprobs: list[dict[str, Any]], flush: bool = True) -> bool:
        tail = seq.stream.flush() if flush else ""
        if tail or logprobs:
            seq.request.emit(TokenEvent(text=tail, token_ids=[], logprobs=logprobs))
        self._release(seq)
        now = time.perf_counter_ns()
        seq.request.emit(
            DoneEvent(
                done_reason=reason,
                prompt_eval_count=len(seq.request.prompt_tokens),
                prompt_eval_duration_ns=seq.prompt_eval_ns,
                eval_count=len(seq.generated),
                eval_duration_ns=max(now - seq.first_token_ns, 1),
                output_tokens=list(seq.generated),
            )
        )
        return False
