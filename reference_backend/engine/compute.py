"""The process's one thread for PyTorch work: loading models, prefill and decode, embeddings.

torch's CPU wheels parallelize operators with GNU OpenMP, which keeps a team of worker threads for every thread
that starts a parallel region. Once a process holds more of those threads than it has CPUs, libgomp stops
spinning between regions, and every operator of a decode step waits for its workers to be woken. On this 2-core
machine a decode step took 17.8 ms on the thread that had loaded the model and 24.8-27 ms on a second thread
(`bench --engine-steps` saw the first, the server the second). So everything the server computes with torch runs
here: jobs submitted from any thread, and the text runners' decode loops, one round each in turn.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

log = logging.getLogger("ollama_conformance.reference_backend.engine")
T = TypeVar("T")
Tick = Callable[[], bool]  # one round of a loop's work; True while it has more to do


class ComputeThread:
    def __init__(self, name: str = "torch-compute") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._loops: list[Tick] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` on the compute thread, between two rounds of the loops."""
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, the thread goes on
                future.set_exception(exc)

        self._jobs.put(job)
        return future

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the compute thread and wait for its result (inline when called from that thread)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit(fn).result()

    async def run(self, fn: Callable[[], T]) -> T:
        """`call` for the event loop: awaits instead of blocking it."""
        return await asyncio.wrap_future(self.submit(fn))

    def add_loop(self, tick: Tick) -> None:
        self.call(lambda: self._loops.append(tick))
        self.wake()

    def remove_loop(self, tick: Tick) -> None:
        """Once this returns, `tick` is not running and will not run again."""
        self.call(lambda: self._loops.remove(tick) if tick in self._loops else None)

    def wake(self) -> None:
        """New work for a loop: run a round even if every loop was idle."""
        self._jobs.put(None)

    def _run(self) -> None:
        torch.set_grad_enabled(False)  # thread-local: the server only infers
        while True:
            busy = False
            for tick in list(self._loops):
                try:
                    busy = tick() or busy
                except Exception:  # a loop that fails is dropped; the thread must live on, or every later job hangs
                    log.exception("a compute loop failed and was removed")
                    self._loops.remove(tick)
            block = not busy
            while True:  # the jobs waiting now (and, when every loop is idle, the next one to come)
                try:
                    job = self._jobs.get(block=block)
                except queue.Empty:
                    break
                block = False
                if job is not None:
                    job()


_shared: ComputeThread | None = None
_shared_lock = threading.Lock()


def shared() -> ComputeThread:
    """The process's compute thread, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ComputeThread()
        return _shared
