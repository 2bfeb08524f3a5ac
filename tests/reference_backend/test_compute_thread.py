"""engine.compute: every torch computation of the server on one thread (a second OpenMP master thread slowed each
decode step by 40-50 %), jobs and decode loops interleaved on it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ollama_conformance.reference_backend.engine.compute import ComputeThread


def test_jobs_and_loops_run_on_the_one_thread() -> None:
    compute = ComputeThread(name="test-compute")
    seen: list[int] = []
    rounds = 0

    def tick() -> bool:
        nonlocal rounds
        seen.append(threading.get_ident())
        rounds += 1
        return rounds < 5  # busy for five rounds, then idle

    compute.add_loop(tick)
    job_thread = compute.call(threading.get_ident)
    deadline = time.monotonic() + 10
    while rounds < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rounds >= 5  # (a wake-up may add a round)
    assert set(seen) == {job_thread} and job_thread != threading.get_ident()
    compute.remove_loop(tick)


def test_an_idle_loop_runs_again_when_woken_and_not_after_removal() -> None:
    compute = ComputeThread(name="test-compute")
    rounds = 0

    def tick() -> bool:
        nonlocal rounds
        rounds += 1
        return False  # idle: the thread waits for a job or a wake-up

    compute.add_loop(tick)
    compute.call(lambda: None)
    idle = rounds
    time.sleep(0.2)
    assert rounds == idle  # no busy polling while idle
    compute.wake()
    compute.call(lambda: None)
    assert rounds > idle
    compute.remove_loop(tick)
    removed = rounds
    compute.wake()
    compute.call(lambda: None)
    assert rounds == removed


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


def test_call_from_the_compute_thread_runs_inline() -> None:
    compute = ComputeThread(name="test-compute")
    # a job that calls back into the thread would wait for itself forever if call() queued it
    assert compute.call(lambda: compute.call(lambda: "inner")) == "inner"
