"""engine.compute: every torch computation of the server on one thread (a second OpenMP master thread slowed each
decode step by 40-50 %), jobs and decode loops interleaved on it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ollama_conformance.reference_backend.engine.compute import ComputeThread

WAIT_S = 10.0


def test_jobs_and_loops_run_on_the_one_thread() -> None:
    compute = ComputeThread(name="test-compute")
    seen: list[int] = []
    five = threading.Event()

    def tick() -> bool:
        seen.append(threading.get_ident())
        if len(seen) >= 5:
            five.set()
        return len(seen) < 5  # busy for five rounds (no job or wake-up needed between them), then idle

    compute.add_loop(tick)
    assert five.wait(WAIT_S)
    job_thread = compute.call(threading.get_ident)
    assert set(seen) == {job_thread} and job_thread != threading.get_ident()
    compute.remove_loop(tick)


def test_an_idle_loop_runs_only_when_woken_and_never_after_removal() -> None:
    compute = ComputeThread(name="test-compute")
    ticked = threading.Event()

    def tick() -> bool:
        ticked.set()
        return False  # idle: the thread waits for a job or a wake-up

    compute.add_loop(tick)
    assert ticked.wait(WAIT_S)
    time.sleep(0.1)  # the rounds that adding it caused are over
    ticked.clear()
    time.sleep(0.3)
    assert not ticked.is_set()  # no polling while idle
    compute.wake()
    assert ticked.wait(WAIT_S)
    compute.remove_loop(tick)
    ticked.clear()
    compute.wake()
    compute.call(lambda: None)
    time.sleep(0.1)
    assert not ticked.is_set()


def test_a_failing_job_raises_in_the_caller_and_the_thread_goes_on() -> None:
    compute = ComputeThread(name="test-compute")

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        compute.call(fail)
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(compute.run(fail))
    assert compute.call(lambda: 42) == 42
    assert asyncio.run(compute.run(lambda: 7)) == 7


def test_a_failing_loop_is_dropped_and_the_thread_goes_on() -> None:
    compute = ComputeThread(name="test-compute")
    calls = 0

    def broken() -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in a decode loop")

    compute.add_loop(broken)
    assert compute.submit(lambda: "alive").result(timeout=WAIT_S) == "alive"
    compute.wake()
    assert compute.submit(lambda: "still").result(timeout=WAIT_S) == "still"
    assert calls == 1


def test_call_from_the_compute_thread_runs_inline() -> None:
    compute = ComputeThread(name="test-compute")
    # a job that calls back into the thread would wait for itself forever if call() queued it
    assert compute.submit(lambda: compute.call(lambda: "inner")).result(timeout=WAIT_S) == "inner"
