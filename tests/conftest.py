"""Fixtures shared by the project's own tests: the recordings folder and one reference backend per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Before anything loads torch (and its libgomp), here and in every server the tests start: one OpenMP thread per
# process, idle ones asleep at once. The suite keeps both cores busy with three workers and their servers, where a
# second thread per process only waits on the other's core, and spinning starves the others (a decode step: 30 ms
# passive, 43-60 ms spinning, beside two busy processes; an in-process engine test 7.7 s passive, 110 s spinning,
# two at once). The whole suite: 720 s with PASSIVE in the servers only, 642 s in the workers too, 609 s with one
# thread. The server's own defaults (two threads, a brief spin: reference_backend/cli.set_openmp_spin) are the best
# on a quiet machine, where the benchmarks measure them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

if TYPE_CHECKING:
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

REPO_ROOT = Path(__file__).resolve().parent.parent


def recordings_dir() -> Path:
    """Third-party recordings of real Ollama traffic: ../shared/recordings, or $OLLAMA_CONFORMANCE_RECORDINGS."""
    configured = os.environ.get("OLLAMA_CONFORMANCE_RECORDINGS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "recordings"


def missing_outside_pypi(message: str) -> None:
    """A test needs something that pip does not install (Debian's chromium, Redocly from npm, the recordings):
    skipped with one line on a fresh clone, failed where CI=true (.ci/run provides it, so absent is a bug)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_recordings() -> Path:
    """The recordings folder; absent, the test skips with one line (a fresh clone), or fails where CI=true."""
    path = recordings_dir()
    if not path.is_dir():
        missing_outside_pypi(f"third-party recordings not found at {path}: set OLLAMA_CONFORMANCE_RECORDINGS to that folder")
    return path


@pytest.fixture(scope="session")
def recordings() -> Path:
    return require_recordings()


@pytest.fixture(scope="session")
def reference_backend() -> Iterator[ReferenceBackend | None]:
    """The session's own reference backend (models load once; a throw-away store of its own: under -n 3 another
    worker's backend creates and deletes models too), or None where OLLAMA_CONFORMANCE_TEST_TARGET names one."""
    if os.environ.get("OLLAMA_CONFORMANCE_TEST_TARGET"):
        yield None
        return
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend(throwaway_store=True) as backend:
        yield backend


@pytest.fixture(scope="session")
def reference_url(reference_backend: ReferenceBackend | None) -> str:
    """One reference backend for the whole session. OLLAMA_CONFORMANCE_TEST_TARGET reuses one."""
    if reference_backend is None:
        return os.environ["OLLAMA_CONFORMANCE_TEST_TARGET"].rstrip("/")
    return reference_backend.url


@pytest.fixture(scope="session")
def own_reference_backend(reference_backend: ReferenceBackend | None) -> Iterator[ReferenceBackend]:
    """A reference backend this session started (its process readable, its store a throw-away one, so tests may
    create and delete models): the session's, or one of its own where the session's is an external target."""
    if reference_backend is not None:
        yield reference_backend
        return
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    with ReferenceBackend(throwaway_store=True, quiet=True) as backend:
        yield backend


# Run in parallel with `-n 3 --dist loadscope` (the README's and CI's command): the suite often waits on servers.
# Scheduling only decides where and when a test runs, never whether or how: the same tests, the same assertions.
WHOLE_PACKAGE_UNITS = ("tests/cloud/",)  # package-scoped backends (tests/cloud/conftest.py): one worker, one start
EACH_TEST_A_UNIT = (  # modules of long tests that share no module-scoped fixture: their tests run side by side
    "tests/reports/test_run_command.py",
)
LONGEST_FIRST = (  # measured --durations=0 per unit (setup + call + teardown; notes/s26/tests.md), longest first:
    # no worker is left alone with a long one at the end
    "tests/reference_backend/test_quantized_engine.py",  # the faithfulness measurement, in-process engines
    "tests/reference_backend/test_gemma3_engine.py",  # in-process engine comparisons
    "tests/conformance/test_conformance_defects.py",
    "tests/reference_backend/test_fuzz.py",
    "tests/conformance/test_conformance_reference.py",
    "tests/conformance/test_conformance_partial.py",
    "tests/conformance/test_conformance_harness.py",
    "tests/conformance/test_created_model_defects.py",
    "tests/reports/test_run_command.py::test_run_end_to_end_on_the_reference_backend",
    "tests/conformance/test_differential.py",
    "tests/reports/test_run_command.py::test_run_covers_lifecycle_cloud_and_no_cloud",
    "tests/reference_backend/test_context_shift.py",
    "tests/conformance/test_conformance_legal_variants.py",
    "tests/reference_backend/test_hostile_input.py",
    "tests/cloud/",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under `--dist loadscope`: a module's tests stay on one worker (module-scoped backends start once), so do all of
    tests/cloud (package-scoped); the long tests of EACH_TEST_A_UNIT are split, and the longest units are handed out
    first. Other --dist modes: xdist's own."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for package in WHOLE_PACKAGE_UNITS:
                if nodeid.startswith(package):
                    return package
            if nodeid.startswith(EACH_TEST_A_UNIT):
                return nodeid
            return nodeid.split("::", 1)[0]  # the module: a class's tests share its module-scoped fixtures too

        def _assign_work_unit(self, node: object) -> None:
            for scope in reversed(LONGEST_FIRST):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return Scheduling(config, log)
