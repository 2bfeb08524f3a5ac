"""`ollama-conformance run [--target URL]`: the main job, in one folder.

With no target: start the reference backend once, run the conformance suite and a short benchmark against it,
write every report (Markdown, HTML, JSON summary, badge) beside the results, record the run in the history,
print a summary and where the reports are. With `--target URL`, the same against that server.

Exit status: 0 when every applicable MUST test passed; 1 when a MUST test failed or errored, or a phase could
not produce its results; 2 bad options; 3 the target could not be used at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ollama_conformance.errors import TargetError, UsageError

DEFAULT_CHAT_MODEL = "gemma3:270m"  # conformance.warmup.DEFAULT_CHAT_MODEL (not imported here: httpx, at --help)
HELP = "Check and benchmark a server (default: the bundled reference backend) and write every report to one folder."
DEFAULT_RUNS_DIR = "ollama-conformance-runs"
CHECK_FILE = "check.json"
JUNIT_FILE = "junit.xml"
CHECK_LOG = "check.log"
BENCH_DIR = "bench"
BENCH_LOG = "bench.log"
EXIT_OK, EXIT_FAIL, EXIT_TARGET = 0, 1, 3
BENCH_WARMUP_S = 2.0  # seconds of each step not measured (the first requests warm caches)
BENCH_SEED = 1
PROFILE_URLS = {"local": "http://localhost:11434", "cloud": "https://ollama.com"}
PLAIN_INTERVAL_S = 10.0
PROGRESS_FILE = "progress.jsonl"  # written by the suite's progress plugin (conformance/progress.py)
PARTS_DIR = "check-parts"  # the cloud-mode and no-cloud runs' own results and logs, folded into check.json
LOCAL_LABEL = "reference backend (throw-away store)"
CLOUD_LABEL = "reference backend in cloud mode (serve --cloud, generated key)"
NO_CLOUD_LABEL = "reference backend with OLLAMA_NO_CLOUD=1"
# The embedded default's extra runs: which tests each selects (pytest -k), and which "not applicable" of the main
# run it answers (the start of the reason the suite gives: conformance/suite/test_cloud.py)
EXTRA_PARTS = {
    "cloud": (CLOUD_LABEL, "test_cloud", ("needs the cloud profile",)),
    # the refusals, and the tools refusal, which needs a chat model without the tools capability: the bundled
    # gemma3 has it, so NO_TOOLS_MODEL is created from it there with a template that has no .Tools (as in Ollama,
    # the capability follows the template)
    "no-cloud": (NO_CLOUD_LABEL, "test_disabled_cloud or test_tools_refused_without_capability",
                 ("cloud is enabled on the target", "supports tools: the refusal does not apply")),
}
NO_TOOLS_MODEL = "conformance-no-tools:latest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="URL", help="base URL of the server (default: start the reference backend)")
    parser.add_argument("--profile", choices=["local", "cloud", "reference"], help="kind of target; local or cloud alone means localhost:11434 or ollama.com (default: local with --target)")
    parser.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key (cloud: OLLAMA_API_KEY)")
    parser.add_argument("--model", metavar="M", help="chat/generate model (default: discovered; gemma3:270m on the reference backend)")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for results and reports (default ./{DEFAULT_RUNS_DIR}/<UTC time>)")
    parser.add_argument("--level", choices=["MUST", "SHOULD", "MAY"], help="check only this level and the stricter ones")
    parser.add_argument("--gate", choices=["MUST", "SHOULD", "MAY", "none"], default="MUST",
                        help="exit 1 when a check test at or above this level did not pass (default MUST; none: never)")
    parser.add_argument("--surface", metavar="LIST", default="", help="comma-separated surfaces to check: native,openai,anthropic,cloud")
    parser.add_argument("--feature", metavar="GLOB", action="append", default=[], help="check only feature ids matching this glob (repeatable)")
    parser.add_argument("--allow-mutations", action="store_true",
                        help="with --target: allow tests that create, copy and delete models on it (the embedded "
                        "default always runs them, on a throw-away store)")
    parser.add_argument("--check-timeout", metavar="S", type=float, default=120.0, help="per-test timeout in seconds (default 120)")
    parser.add_argument("--skip-check", action="store_true", help="benchmark only")
    parser.add_argument("--skip-bench", action="store_true", help="conformance only")
    parser.add_argument("--concurrency", metavar="LIST", default="1,2", help="benchmark concurrency steps (default 1,2)")
    parser.add_argument("--requests", metavar="N", type=int, default=10, help="measured requests per benchmark step (default 10)")
    parser.add_argument("--output-tokens", metavar="N", type=int, default=32, help="cap on output tokens per benchmark request (default 32)")
    parser.add_argument("--history-db", type=Path, default=None, help="history database (default $OLLAMA_CONFORMANCE_HISTORY or ~/.local/share/ollama-conformance/history.sqlite)")
    parser.add_argument("--no-history", action="store_true", help="do not record this run in the history")


@dataclass
class RunPlan:
    out: Path
    target: str | None
    profile: str | None
    concurrency: list[int]
    history_db: Path | None
    notes: list[str] = field(default_factory=list)


def _plan(args: argparse.Namespace) -> RunPlan:
    if args.skip_check and args.skip_bench:
        raise UsageError("--skip-check and --skip-bench leave nothing to run")
    try:
        concurrency = [int(v) for v in str(args.concurrency).split(",") if v.strip()]
    except ValueError as exc:
        raise UsageError(f"--concurrency must be a comma-separated list of integers, got {args.concurrency!r}") from exc
    if not concurrency or min(concurrency) < 1:
        raise UsageError("--concurrency needs at least one step, each ≥ 1")
    if args.requests < 1 or args.output_tokens < 1:
        raise UsageError("--requests and --output-tokens must be ≥ 1")
    if args.target and not re.match(r"^https?://", args.target):
        raise UsageError(f"--target must be an http(s) URL, got {args.target!r}")
    if args.profile == "cloud" and not args.skip_bench:
        from ollama_conformance.conformance.target import missing_key_reason

        no_key = missing_key_reason("cloud", args.api_key_env)
        if no_key:  # `check` alone reports the cloud tests not applicable; a benchmark has nothing to fall back on
            raise UsageError(f"{no_key}; the benchmark needs it (or give --skip-bench)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(DEFAULT_RUNS_DIR) / stamp
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; give another --out")
    from ollama_conformance.reports import history

    db = None if args.no_history else (args.history_db or history.default_path())
    target = args.target.rstrip("/") if args.target else PROFILE_URLS.get(args.profile or "")
    return RunPlan(out=out, target=target, profile=args.profile, concurrency=concurrency, history_db=db)


def _console(*, stderr: bool) -> Any:
    """Progress goes to stderr, the summary to stdout (rich is imported here: --help stays cheap)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a log or CI has no terminal width: 120 columns keep the tables whole
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 120)


class PlainProgress:
    """Progress as plain lines, for logs and CI (rich draws live bars only on a terminal).

    Same calls as rich's Progress (add_task, update); prints a phase's line when its detail changes, at most
    every PLAIN_INTERVAL_S seconds, and always when it completes.
    """

    def __init__(self, console: Any) -> None:
        self.console = console
        self.tasks: dict[int, dict[str, Any]] = {}
        self.t0 = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, detail: str = "", **_: Any) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = {"description": description, "total": total, "completed": 0, "detail": detail,
                               "printed_at": 0.0, "done": False}
        self._print(task_id)
        return task_id

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None, detail: str | None = None) -> None:
        task = self.tasks[task_id]
        changed = detail is not None and detail != task["detail"]
        if total is not None:
            task["total"] = total
        if completed is not None:
            changed = changed or completed != task["completed"]
            task["completed"] = completed
        if detail is not None:
            task["detail"] = detail
        finished = task["total"] is not None and task["completed"] >= task["total"] and not task["done"]
        if finished or (changed and time.monotonic() - task["printed_at"] >= PLAIN_INTERVAL_S):
            task["done"] = task["done"] or finished
            self._print(task_id)

    def _print(self, task_id: int) -> None:
        task = self.tasks[task_id]
        task["printed_at"] = time.monotonic()
        share = f" {100 * task['completed'] / task['total']:.0f}%" if task["total"] else ""
        elapsed = time.monotonic() - self.t0
        self.console.print(f"[{elapsed:6.1f}s] {task['description']}{share} {_plain(task['detail'])}", markup=False)


def _plain(text: str) -> str:
    """Rich markup removed ("[red]failed" -> "failed")."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(text).plain
    except MarkupError:
        return text


def _progress(console: Any) -> Any:
    if not console.is_terminal:
        return PlainProgress(console)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
    )


@dataclass
class Embedded:
    """A reference backend `run` started: its mode (launcher.embedded), URL and the key it accepts (cloud mode)."""

    mode: str
    backend: Any
    url: str = ""
    key: str | None = None


def start_reference_backends(progress: Any, modes: list[str], num_parallel: int, stack: ExitStack) -> tuple[dict[str, Embedded], list[str]]:
    """The reference backends for `modes`, started together (each on its own throw-away store); stopped by `stack`.
    The "local" one must start; another that fails is a problem reported, its tests stay not applicable."""
    from ollama_conformance.reference_backend.launcher import embedded

    task = progress.add_task("reference backend", total=len(modes),
                             detail=f"starting {', '.join(modes)} (a first start converts the model)")
    found: dict[str, Embedded] = {}
    for mode in modes:
        backend, key = embedded(mode, num_parallel=num_parallel if mode == "local" else 1)
        stack.callback(backend.stop)
        found[mode] = Embedded(mode=mode, backend=backend, key=key)
    errors: dict[str, BaseException] = {}

    def start(item: Embedded) -> None:
        try:
            item.url = item.backend.start()
        except BaseException as exc:  # reported below, in the calling thread
            errors[item.mode] = exc

    threads = [threading.Thread(target=start, args=(item,), name=f"start-{item.mode}", daemon=True) for item in found.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if "local" in errors:
        raise errors["local"]
    problems = [f"the reference backend ({mode}) did not start: {exc}" for mode, exc in errors.items()]
    started = {mode: item for mode, item in found.items() if mode not in errors}
    progress.update(task, completed=len(modes), detail=" ".join(f"{m} {e.url}" for m, e in started.items()))
    return started, problems


def warm_up(url: str, chat_model: str, progress: Any) -> str:
    """Load the reference backend's models before the suite runs (conformance.warmup), with a progress line."""
    from ollama_conformance.conformance.warmup import warm_up as send_warm_up
    from ollama_conformance.conformance.warmup import warm_up_requests

    total = len(warm_up_requests(chat_model))
    task = progress.add_task("warm-up", total=total, detail="loading models (/api/show, a first generation, a first embedding)")
    problem = send_warm_up(
        url, chat_model=chat_model,
        on_request=lambda i, path, body: progress.update(task, completed=i, detail=f"{path} {body['model']}"),
    )
    if problem:
        progress.update(task, detail=f"[yellow]{problem[:80]}")
    else:
        progress.update(task, completed=total, detail="models loaded")
    return problem


@dataclass(frozen=True)
class CheckPart:
    """One pytest run of the suite within `run`: against which server, with which selection, into which files."""

    name: str  # "" for the main run (check.json, check.log), else a suffix (check-cloud.json, ...)
    url: str
    profile: str | None
    label: str = ""  # the target the rows name in a folded run ("" with --target)
    model: str | None = None  # the chat model, when not the run's
    allow_mutations: bool = False
    api_key_env: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    pytest_args: tuple[str, ...] = ()

    def file(self, base: str, suffix: str) -> str:
        return f"{base}-{self.name}{suffix}" if self.name else f"{base}{suffix}"


def run_check_phase(plan: RunPlan, args: argparse.Namespace, part: CheckPart, progress: Any,
                    stop: threading.Event | None = None) -> tuple[Path | None, str]:
    """The conformance suite in a child pytest; progress follows its per-test lines, the full output goes to check.log."""
    from ollama_conformance.conformance.runner import CheckOptions, pytest_command

    folder = plan.out if not part.name else plan.out / PARTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    options = CheckOptions(
        target=part.url,
        profile=part.profile,
        api_key_env=part.api_key_env or args.api_key_env,
        model=part.model or args.model,
        surfaces=[s.strip() for s in args.surface.split(",") if s.strip()],
        level=args.level,
        features=list(args.feature),
        allow_mutations=part.allow_mutations or getattr(args, "allow_mutations", False),
        junit=(folder / part.file("junit", ".xml")).resolve(),
        timeout_s=args.check_timeout,
        gate=getattr(args, "gate", "MUST"),
        pytest_args=list(part.pytest_args),
    )
    options.validate()
    json_path = (folder / part.file("check", ".json")).resolve()
    task = progress.add_task(f"conformance{f' ({part.label})' if part.name else ''}", total=100, detail="collecting")
    tail: deque[str] = deque(maxlen=15)
    with (folder / part.file("check", ".log")).open("w", encoding="utf-8") as log, \
            tempfile.TemporaryDirectory(prefix="ollama-conformance-") as scratch:
        events_path = Path(scratch) / PROGRESS_FILE
        events_path.touch()
        cmd = [*pytest_command(options, json_path), "-p", "ollama_conformance.conformance.progress",
               "--ollama-progress", str(events_path)]
        proc = subprocess.Popen(cmd, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **part.env})
        assert proc.stdout is not None
        follower = SuiteProgress(events_path, progress, task)
        reader = threading.Thread(target=_copy_output, args=(proc.stdout, log, tail), name="check-log", daemon=True)
        reader.start()
        try:
            while proc.poll() is None:
                if stop is not None and stop.is_set():  # the run was interrupted in another thread
                    raise KeyboardInterrupt
                follower.poll()
                time.sleep(0.2)
            status = proc.wait()
            reader.join(timeout=10)
            follower.poll()
        finally:  # interrupted: the suite must not outlive us
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
    if not json_path.exists():
        progress.update(task, detail=f"[red]no results (pytest exit {status})")
        return None, "the conformance suite{} wrote no results (pytest exit status {}); last lines:\n{}".format(
            f" ({part.label})" if part.name else "", status, "\n".join(tail))
    progress.update(task, completed=100)
    return json_path, ""


def run_checks(plan: RunPlan, args: argparse.Namespace, url: str, backends: dict[str, Embedded], progress: Any) -> tuple[Path | None, list[str]]:
    """The check phase. With --target: the suite against it. On the embedded default: the whole suite with the
    lifecycle tests (the backend's store is thrown away) and, at the same time, the cloud-profile tests on the
    cloud-mode backend and the refusal tests on the OLLAMA_NO_CLOUD=1 one, folded into one check.json."""
    from ollama_conformance.reference_backend.launcher import CLOUD_KEY_ENV

    if plan.target is not None:
        path, problem = run_check_phase(plan, args, CheckPart("", url, plan.profile), progress)
        return path, [problem] if problem else []
    main = CheckPart("", url, "reference", LOCAL_LABEL, allow_mutations=True)
    extras = []
    setup_problems: list[str] = []
    for mode, (label, selector, _answers) in EXTRA_PARTS.items():
        item = backends.get(mode)
        if item is None:
            continue
        cloud = mode == "cloud"
        model = None
        if mode == "no-cloud" and not args.model:
            problem = create_no_tools_model(item.url)
            model = None if problem else NO_TOOLS_MODEL
            if problem:
                setup_problems.append(problem)
        extras.append(CheckPart(mode, item.url, "cloud" if cloud else "reference", label, model=model,
                                api_key_env=CLOUD_KEY_ENV if cloud else None,
                                env={CLOUD_KEY_ENV: item.key or ""} if cloud else {}, pytest_args=("-k", selector)))
    done: dict[str, tuple[Path | None, str]] = {}
    stop = threading.Event()

    def run_extras() -> None:
        for part in extras:
            if stop.is_set():
                return
            try:
                done[part.name] = run_check_phase(plan, args, part, progress, stop)
            except KeyboardInterrupt:  # stopped: the run itself was interrupted (its suite was terminated)
                return
            except Exception as exc:  # reported below; the main run's results stand
                done[part.name] = (None, f"the conformance suite ({part.label}) could not run: {exc}")
            finally:  # its backend has served its tests: free its memory and CPU for the main run
                backends[part.name].backend.stop()

    worker = threading.Thread(target=run_extras, name="check-extras", daemon=True)
    worker.start()
    try:
        path, problem = run_check_phase(plan, args, main, progress)
    except BaseException:  # interrupted: the extra suites are stopped too, nothing outlives the run
        stop.set()
        worker.join(timeout=30)
        raise
    worker.join()
    problems = setup_problems + ([problem] if problem else [])
    problems += [p for _, p in done.values() if p]
    if path is None:
        return None, problems
    fold_parts(path, main, [(part, done[part.name][0]) for part in extras if done.get(part.name, (None, ""))[0]])
    return path, problems


def create_no_tools_model(url: str) -> str:
    """NO_TOOLS_MODEL on a backend `run` owns: gemma3:270m with a template that has no .Tools; "" or the problem."""
    import httpx

    body = {"model": NO_TOOLS_MODEL, "from": DEFAULT_CHAT_MODEL, "template": "{{ .Prompt }}", "stream": False}
    try:
        answer = httpx.post(f"{url}/api/create", json=body, timeout=120.0)
    except httpx.HTTPError as exc:
        return f"could not create {NO_TOOLS_MODEL} for the tools refusal test: {exc}"
    if answer.status_code != 200:
        return f"could not create {NO_TOOLS_MODEL} for the tools refusal test: {answer.status_code} {answer.text[:200]}"
    return ""


def fold_parts(path: Path, main: CheckPart, extras: list[tuple[CheckPart, Path | None]]) -> None:
    """check.json rewritten with the extra runs' answers (ollama_conformance.check_parts), and junit.xml to match."""
    from ollama_conformance.check_parts import Part, fold
    from ollama_conformance.conformance.junit import align_junit
    from ollama_conformance.conformance.results import write_results

    def read(p: Path) -> dict[str, Any]:
        return json.loads(p.read_text(encoding="utf-8"))

    parts = [Part(part.label, EXTRA_PARTS[part.name][2], read(extra)) for part, extra in extras if extra is not None]
    folded = fold(Part(main.label, (), read(path)), parts)
    write_results(path, folded)
    junit = path.parent / JUNIT_FILE
    if junit.exists():
        align_junit(junit, {test["id"]: test for test in folded["tests"]})


def _copy_output(stream: Any, log: Any, tail: deque[str]) -> None:
    """The suite's console output goes to check.log; its last lines are kept for an error message."""
    for line in stream:
        log.write(line)
        tail.append(line.rstrip())


class SuiteProgress:
    """Follows the progress plugin's JSON lines (conformance/progress.py) and moves the progress bar."""

    def __init__(self, path: Path, progress: Any, task: int) -> None:
        self.path, self.progress, self.task = path, progress, task
        self.offset = 0
        self.total = 0
        self.done = 0
        self.counts: dict[str, int] = {}

    def poll(self) -> None:
        with contextlib.suppress(OSError), self.path.open("r", encoding="utf-8") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind("\n") + 1] if "\n" in chunk else ""
        self.offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                self._apply(json.loads(line))

    def _apply(self, event: dict[str, Any]) -> None:
        if event.get("event") == "collected":
            self.total = int(event.get("total") or 0)
        elif event.get("event") == "test":
            self.done += 1
            outcome = str(event.get("outcome"))
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
        percent = 100 * self.done // self.total if self.total else 0
        detail = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "collected"
        self.progress.update(self.task, completed=min(percent, 99), detail=detail)


def _count_samples(bench_dir: Path) -> int:
    """Requests finished so far: lines in the per-step raw sample files the locust processes write."""
    done = 0
    for path in bench_dir.glob("locust/*/raw/samples-*.jsonl"):
        with contextlib.suppress(OSError), path.open("rb") as handle:
            done += sum(1 for _ in handle)
    return done


def run_bench_phase(plan: RunPlan, args: argparse.Namespace, url: str, server_pid: int | None, progress: Any) -> tuple[Path | None, str]:
    """A short benchmark: concurrency steps, a fixed number of requests each, into OUT/bench/."""
    from ollama_conformance.load.runner import BenchOptions, run_bench

    bench_dir = (plan.out / BENCH_DIR).resolve()
    options = BenchOptions(
        target=url,
        profile=plan.profile or ("reference" if plan.target is None else None),
        model=args.model or _chat_model_from_check(plan.out / CHECK_FILE) or DEFAULT_CHAT_MODEL,
        concurrency=plan.concurrency,
        duration_s=None,
        requests=args.requests,
        warmup_s=BENCH_WARMUP_S,
        output_tokens=args.output_tokens,
        out_dir=str(bench_dir),
        server_pid=server_pid,
        seed=BENCH_SEED,
        quiet=True,
    )
    options.validate()
    total = len(plan.concurrency) * args.requests
    task = progress.add_task("benchmark", total=total, detail=f"concurrency {','.join(map(str, plan.concurrency))}")
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["status"] = run_bench(options)
        except BaseException as exc:  # reported below, in the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="bench", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.5)
        steps_started = sorted(p.name for p in (bench_dir / "locust").glob("*") if p.is_dir()) if (bench_dir / "locust").is_dir() else []
        detail = f"step {steps_started[-1].replace('-', '=', 1)}" if steps_started else "starting"
        progress.update(task, completed=min(_count_samples(bench_dir), total), detail=detail)
    error = outcome.get("error")
    if isinstance(error, UsageError | TargetError):
        raise error
    if error is not None:
        progress.update(task, detail=f"[red]failed: {type(error).__name__}")
        return None, f"the benchmark failed: {type(error).__name__}: {error}"
    if not (bench_dir / "results.json").exists():
        return None, f"the benchmark wrote no results in {bench_dir}"
    progress.update(task, completed=total, detail="done" if outcome.get("status") == 0 else "[red]every request failed")
    if outcome.get("status") != 0:
        return bench_dir, "every benchmark request failed (see bench/locust/*/locust.log)"
    return bench_dir, ""


def print_summary(console: Any, summary: dict[str, Any], written: Any, plan: RunPlan, problems: list[str], elapsed_s: float) -> None:
    from rich.table import Table

    from ollama_conformance.reports.badge import badge_text
    from ollama_conformance.reports.summary import badge_rates, exact_badge_rates
    from ollama_conformance.vocabulary import LEVELS

    for check in summary["conformance"]:
        table = Table(title=f"Conformance: {badge_text(badge_rates(summary), exact_badge_rates(summary))}")
        exact = check.get("exact_by_level")
        columns = ["level", "pass", "fail", "error", "inconclusive", "n/a", "pass rate", *(["exact"] if exact else [])]
        for column in columns:
            table.add_column(column, justify="left" if column == "level" else "right")

        def rate_text(rate: float | None) -> str:
            return "–" if rate is None else f"{int(rate * 100 + 1e-9)}%"

        for level in LEVELS:
            c = check["by_level"][level]
            row = [level, str(c["pass"]), str(c["fail"]), str(c["error"]), str(c.get("inconclusive", 0)),
                   str(c["not_applicable"]), rate_text(c["rate"])]
            table.add_row(*row, *([rate_text(exact[level]["rate"])] if exact else []))
        console.print(table)
        if check["target"].get("error"):
            console.print(f"  [red]target error:[/] {check['target']['error']} (every test is an error)")
            continue
        for failure in check["failures"][:10]:
            message = " ".join(str(failure.get("message") or "").split())[:140]
            on = f" (on the {failure['target']})" if failure.get("target") else ""
            console.print(f"  [red]{failure['status']}[/] {failure['level']} {failure['feature']}{on}: {message}")
        if len(check["failures"]) > 10:
            console.print(f"  … {len(check['failures']) - 10} more in the report")
    for bench in summary["performance"]:
        table = Table(title=f"Performance: {(bench.get('model') or {}).get('name', '?')}")
        for column in ("step", "ok/err", "TTFT p50 ms", "TTFT p90 ms", "ITL p50 ms", "E2E p50 ms", "output tok/s"):
            table.add_column(column, justify="left" if column == "step" else "right")

        def num(v: float | None, d: int = 1) -> str:
            return "–" if v is None else f"{v:,.{d}f}"

        for step in bench["steps"]:
            lat = step["latency"]
            req = step["requests"]
            table.add_row(
                str(step["name"]), f"{req.get('ok', 0)}/{req.get('error', 0) + req.get('timeout', 0)}",
                num(lat["ttft_ms"]["p50"]), num(lat["ttft_ms"]["p90"]), num(lat["itl_ms"]["p50"]),
                num(lat["e2e_ms"]["p50"], 0), num(step["output_tokens_per_s"]),
            )
        console.print(table)
        if bench.get("parallelism"):
            console.print(bench["parallelism"], markup=False)
    for problem in problems:
        console.print(f"[yellow]warning:[/] {problem}")
    console.print(f"reports in [bold]{plan.out}[/] ({elapsed_s:.0f} s):")
    for path in (written.html, written.markdown, written.summary, written.badge):
        if path is not None:
            console.print(f"  {path}")
    if written.history_error:  # reported; the reports above are written all the same
        console.print(f"[yellow]warning:[/] {written.history_error}")
    elif plan.history_db is not None:
        console.print(f"history: {plan.history_db}")


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: the reference backend and the suite are stopped on the way out


def run(args: argparse.Namespace) -> int:
    plan = _plan(args)
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            return _run(args, plan)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _run(args, plan)


def _run(args: argparse.Namespace, plan: RunPlan) -> int:
    console = _console(stderr=True)
    started = time.monotonic()
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {plan.out}: {exc.strerror or exc}") from exc
    problems: list[str] = []
    result_paths: list[Path] = []
    with ExitStack() as stack:
        progress = stack.enter_context(_progress(console))
        server_pid = None
        backends: dict[str, Embedded] = {}
        if plan.target is None:
            modes = ["local", *([] if args.skip_check else EXTRA_PARTS)]
            backends, start_problems = start_reference_backends(progress, modes, max(plan.concurrency), stack)
            problems += start_problems
            url = backends["local"].url
            server_pid = backends["local"].backend.pid
            problem = warm_up(url, args.model or DEFAULT_CHAT_MODEL, progress)
            if problem:
                problems.append(problem)
        else:
            url = plan.target
        if not args.skip_check:
            check_path, check_problems = run_checks(plan, args, url, backends, progress)
            problems += check_problems
            if check_path:
                result_paths.append(check_path)
            for mode, item in backends.items():  # the cloud and no-cloud backends are done: free their memory
                if mode != "local":
                    item.backend.stop()
        target_error = _target_error(result_paths)
        if target_error:
            problems.append(f"the target could not be used: {target_error}")
        if not args.skip_bench and not target_error:
            try:
                bench_path, problem = run_bench_phase(plan, args, url, server_pid, progress)
            except TargetError as exc:  # keep what the check found: the reports say why the bench is missing
                bench_path, problem = None, f"the benchmark could not use the target: {exc}"
                target_error = str(exc)
            if bench_path:
                result_paths.append(bench_path)
            if problem:
                problems.append(problem)
        memory = _backend_memory(server_pid)  # before the backend stops
        task = progress.add_task("reports", total=1, detail="")
        written = None
        if result_paths:
            from ollama_conformance.reports.results import load_paths
            from ollama_conformance.reports.writer import write_reports

            results = load_paths(result_paths)
            written = write_reports(results, plan.out, plan.history_db, notes=problems)
            progress.update(task, completed=1, detail=str(plan.out))
        else:
            progress.update(task, detail="[red]no results to report")
    if written is None:
        for problem in problems:
            console.print(f"[red]error:[/] {problem}")
        raise TargetError(target_error or "no phase produced results")
    print_summary(_console(stderr=False), written.summary_data, written, plan, problems, time.monotonic() - started)
    if memory:
        _console(stderr=False).print(memory)
    return _exit_status(result_paths, problems, target_error, getattr(args, "gate", "MUST"))


def _backend_memory(pid: int | None) -> str:
    """The embedded backend's resident memory at the end of the run and its peak over the run (issue 16's
    targets are about both), from /proc; empty when there is no embedded backend or no /proc."""
    if pid is None:
        return ""
    from ollama_conformance.reference_backend.bench import memory_mb

    memory = memory_mb(pid)
    if "VmRSS" not in memory or "VmHWM" not in memory:
        return ""
    return (
        f"reference backend memory: RSS {memory['VmRSS']:.0f} MB at the end of the run "
        f"(file-mapped weights {memory.get('RssFile', 0.0):.0f} MB), peak {memory['VmHWM']:.0f} MB during the run"
    )


def _chat_model_from_check(check_path: Path) -> str | None:
    """The model the check discovered for chat/generate (first with the completion capability), if it ran."""
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        models = (json.loads(check_path.read_text(encoding="utf-8")).get("target") or {}).get("models") or []
        return next((str(m["name"]) for m in models if "completion" in (m.get("capabilities") or [])), None)
    return None


def _target_error(result_paths: list[Path]) -> str:
    """The check's own verdict that the target is unusable (target.error in check.json), if any."""
    for path in result_paths:
        if path.name == CHECK_FILE:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                return str((json.loads(path.read_text(encoding="utf-8")).get("target") or {}).get("error") or "")
    return ""


def _exit_status(result_paths: list[Path], problems: list[str], target_error: str, gate: str) -> int:
    """The same gate as `check` (conformance.results.gate_exit_code) on check.json; a failed phase is exit 1."""
    from ollama_conformance.conformance.results import gate_exit_code

    if target_error:
        return EXIT_TARGET
    for path in result_paths:
        if path.name == CHECK_FILE and gate_exit_code(json.loads(path.read_text(encoding="utf-8")), gate):
            return EXIT_FAIL
    return EXIT_FAIL if problems else EXIT_OK
