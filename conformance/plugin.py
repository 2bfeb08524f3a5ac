"""pytest plugin of the Ollama conformance suite (entry point `pytest11: ollama_conformance`).

Run the suite with `pytest --pyargs ollama_conformance.conformance [--target URL] [options]` or `ollama-conformance check`.
The plugin is loaded by every pytest run but stays inert (adds its options and the `feature` marker, nothing
else) unless the suite itself is collected: no backend is started and nothing is recorded otherwise.

Layout of the suite (`conformance/suite/`):
- `conftest.py`: the shared fixtures `target` (a discovered `conformance.target.Target`), `client` (an
  `httpx.Client` on the target, auth included), `api` (`conformance.checks.Api`: requests + spec checks),
  `chat_model` and `embed_model` (model names; the test is *not applicable* when the target has none).
- `test_<area>.py`: one module per area (`test_server`, `test_generate`, `test_chat`, `test_embed`,
  `test_models`, `test_errors`, `test_openai`, `test_anthropic`, `test_properties`, ...). Cloud-profile tests go
  in `test_cloud.py`. Every test carries `@pytest.mark.feature("<id from spec/features.yaml>")`; its level and
  surface come from the catalogue, never from the test.

Result states: pass, fail, not_applicable (a pytest skip, always with the reason), error (the target was
unreachable, dropped the connection, stalled past the timeout, or the harness broke). The terminal summary
gives them by level and by surface; `--conformance-json PATH` writes the results file
(`conformance/results.schema.json`), pytest's own `--junitxml PATH` the JUnit XML.

With pytest-xdist (`-n N`) the controller starts/discovers the target once and hands it to the workers. The
keep_alive/unload tests watch /api/ps, which tests running beside them may refill: run them without `-n`
(`ollama-conformance check` does by default) when a faithful server shows them red under `-n`.
"""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path
from typing import Any

import pytest

SUITE_DIR = Path(__file__).resolve().parent / "suite"
LEVELS = ("MUST", "SHOULD", "MAY")
STATES = ("pass", "fail", "not_applicable", "error")
DEFAULT_TIMEOUT_S = 120.0
# Discovery of a reference backend we started waits for its first model load (50-90 s measured under load on
# the shared 2-core machine); a --target gets the per-test timeout unless --discovery-timeout says otherwise.
COLD_DISCOVERY_TIMEOUT_S = 300.0
# Exceptions meaning "the target could not be talked to", reported as error rather than fail.
TRANSPORT_ERROR_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "StreamStalled",
    "TargetUnavailable",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ollama-conformance", "Ollama conformance suite (used only when the suite is run)")
    group.addoption("--target", default=None, help="base URL of the server under test; none: start the reference backend")
    group.addoption("--profile", default=None, choices=["local", "cloud", "reference"], help="target profile (defaults)")
    group.addoption("--api-key-env", default=None, help="environment variable holding the API key (cloud: OLLAMA_API_KEY)")
    group.addoption("--model", dest="conformance_model", default=None, help="chat/generate model (default: discovered)")
    group.addoption("--embed-model", default=None, help="embedding model (default: discovered)")
    group.addoption("--surface", default=None, help="comma-separated surfaces to test: native,openai,anthropic,cloud")
    group.addoption("--level", dest="conformance_level", default=None, choices=LEVELS, help="test this level and stricter ones")
    group.addoption("--feature", dest="conformance_feature", action="append", default=[], help="feature id glob (repeatable)")
    group.addoption("--allow-mutations", action="store_true", default=False, help="allow copy/delete/create on the target")
    group.addoption("--conformance-json", default=None, metavar="PATH", help="write the results JSON file")
    group.addoption("--conformance-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help="per-test timeout")
    group.addoption("--discovery-timeout", type=float, default=None, metavar="S",
                    help="per-request timeout of discovery and of the reference backend's warm-up (default: "
                         f"{COLD_DISCOVERY_TIMEOUT_S:g} when the backend is started here, else --conformance-timeout)")
    group.addoption("--max-requests", type=int, default=None, metavar="N",
                    help="send at most N requests from the tests (then: not applicable); keeps a cloud run cheap")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "feature(id): the spec/features.yaml feature a conformance test checks")
    config.addinivalue_line("markers", "mutating: the test changes the target's models (needs --allow-mutations)")
    config.addinivalue_line("markers", "unloads: the test unloads a model (run last, so models reload once)")
    if suite_requested(config):
        config.pluginmanager.register(ConformanceSession(config), "ollama-conformance-session")


def suite_requested(config: pytest.Config) -> bool:
    """True when the collection will include the suite (its folder, a module of it, or `--pyargs conformance`)."""
    if getattr(config, "workerinput", {}).get("conformance_suite"):
        return True
    for arg in config.args:
        base = str(arg).split("::", 1)[0]
        if config.option.pyargs and (base == "ollama_conformance.conformance" or base.startswith("ollama_conformance.conformance.suite")):
            return True
        path = Path(config.invocation_params.dir, base).resolve()
        if path == SUITE_DIR or SUITE_DIR in path.parents or path in SUITE_DIR.parents:
            return True
    return False


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class ConformanceSession:
    """State of one conformance run: the target, the feature catalogue, and the recorded results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.time()
        self.backend: Any = None
        self.target_error: str | None = None
        self.target: Any = None
        # Set when no test can apply (cloud profile without a key): every test is skipped with it, nothing is sent.
        self.not_applicable_reason: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self._features: dict[str, Any] | None = None
        self._check_options()

    def _check_options(self) -> None:
        """Bad options stop the run at once with one line (pytest exit status 4), before any test runs."""
        from ollama_conformance.conformance import target as target_mod

        from ollama_conformance.errors import UsageError

        opt = self.config.option
        try:
            if opt.target:
                opt.target = target_mod.normalise_url(opt.target)
            if opt.conformance_timeout <= 0:
                raise UsageError("--conformance-timeout must be a positive number of seconds")
            if opt.discovery_timeout is not None and opt.discovery_timeout <= 0:
                raise UsageError("--discovery-timeout must be a positive number of seconds")
            profile = opt.profile or ("local" if opt.target else "reference")
            self.not_applicable_reason = target_mod.missing_key_reason(profile, opt.api_key_env)
            if self.not_applicable_reason and not opt.target:
                opt.target = target_mod.DEFAULT_URLS[profile]  # named in the results file; never contacted
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from exc

    # --- target ---------------------------------------------------------------------------------------------

    def resolve_target(self) -> Any:
        """Discover the target once (controller) or rebuild it from the controller's discovery (xdist worker)."""
        if self.target is not None or self.target_error is not None or self.not_applicable_reason:
            return self.target
        from ollama_conformance.conformance import target as target_mod

        from ollama_conformance.errors import TargetError, UsageError

        opt = self.config.option
        try:
            profile = opt.profile or ("local" if opt.target else "reference")
            if profile in target_mod.DEFAULT_URLS and not opt.target:
                opt.target = target_mod.DEFAULT_URLS[profile]  # local: localhost:11434; cloud: ollama.com
            api_key = target_mod.resolve_api_key(profile, opt.api_key_env)
            worker = getattr(self.config, "workerinput", {})
            if worker.get("conformance_target"):
                data = worker["conformance_target"]
                if data.get("error"):
                    self.target_error = data["error"]
                    return None
                self.target = target_mod.from_json(
                    data, url=worker["conformance_url"], api_key=api_key,
                    timeout_s=opt.conformance_timeout, allow_mutations=opt.allow_mutations,
                )
                return self.target
            if opt.target:
                url = target_mod.normalise_url(opt.target)
            else:
                from ollama_conformance.reference_backend.launcher import ReferenceBackend

                self.backend = ReferenceBackend()
                url = self.backend.start()
                self._warm_up(url)
            self.target = target_mod.discover(
                url, profile=profile, api_key=api_key, chat_model=opt.conformance_model,
                embed_model=opt.embed_model, timeout_s=self._discovery_timeout(), allow_mutations=opt.allow_mutations,
            )
            self.target.timeout_s = opt.conformance_timeout
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from exc
        except TargetError as exc:
            self.target_error = str(exc)
        except ImportError as exc:
            self.target_error = f"cannot start the reference backend ({exc}); install ollama-conformance[reference]"
        return self.target

    def _discovery_timeout(self) -> float:
        opt = self.config.option
        if opt.discovery_timeout is not None:
            return float(opt.discovery_timeout)
        return max(COLD_DISCOVERY_TIMEOUT_S, opt.conformance_timeout) if self.backend is not None else opt.conformance_timeout

    def _warm_up(self, url: str) -> None:
        """Load the models of the backend we started, so no test (nor discovery) pays for the first load.

        A failed warm-up is not fatal here: discovery then reports what is wrong with one clear line."""
        from ollama_conformance.conformance.warmup import warm_up

        opt = self.config.option
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"warming up the reference backend at {url} (loading models)")
        problem = warm_up(url, chat_model=opt.conformance_model, embed_model=opt.embed_model, timeout_s=self._discovery_timeout())
        if problem and reporter is not None:
            reporter.write_line(f"warm-up: {problem}", yellow=True)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Start/discover the target before the first test, so its start-up is not charged to that test's timeout."""
        if self.config.option.collectonly or _is_worker(self.config):
            return
        if any(SUITE_DIR in Path(str(item.path)).parents for item in session.items):
            self.resolve_target()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: hand the controller's discovery to each worker, so the backend starts once and models load once."""
        self.resolve_target()
        node.workerinput["conformance_suite"] = True
        if self.not_applicable_reason:  # the workers skip every test themselves (same options): nothing to hand over
            node.workerinput["conformance_url"] = ""
            node.workerinput["conformance_target"] = {"error": self.not_applicable_reason}
        elif self.target is not None:
            node.workerinput["conformance_url"] = self.target.url
            node.workerinput["conformance_target"] = self.target.to_json()
        else:
            node.workerinput["conformance_url"] = ""
            node.workerinput["conformance_target"] = {"error": self.target_error or "target unavailable"}

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.backend is not None:
            self.backend.stop()

    # --- features and selection -----------------------------------------------------------------------------

    def features(self) -> dict[str, Any]:
        if self._features is None:
            from ollama_conformance import spec

            self._features = spec.features()
        return self._features

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        catalogue = self.features()
        opt = config.option
        surfaces = {s.strip() for s in (opt.surface or "").split(",") if s.strip()}
        levels = LEVELS[: LEVELS.index(opt.conformance_level) + 1] if opt.conformance_level else LEVELS
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            if SUITE_DIR not in Path(str(item.path)).parents:
                keep.append(item)
                continue
            marker = item.get_closest_marker("feature")
            if marker is None or not marker.args:
                raise pytest.UsageError(f"{item.nodeid}: conformance test without @pytest.mark.feature")
            feature = catalogue.get(marker.args[0])
            if feature is None:
                raise pytest.UsageError(f"{item.nodeid}: feature {marker.args[0]!r} is not in spec/features.yaml")
            selected = (
                (not surfaces or feature.surface in surfaces)
                and feature.level in levels
                and (not opt.conformance_feature or any(fnmatch.fnmatch(feature.id, g) for g in opt.conformance_feature))
            )
            if not selected:
                dropped.append(item)
                continue
            # A stable id whatever the rootdir: conformance/suite/<module>::<test>.
            stable = f"conformance/suite/{Path(str(item.path)).relative_to(SUITE_DIR).as_posix()}::{item.name}"
            item.user_properties.extend(
                [("feature", feature.id), ("level", feature.level), ("surface", feature.surface), ("test_id", stable)]
            )
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(opt.conformance_timeout))
            if self.not_applicable_reason:  # skipped before any fixture: no discovery, no request
                item.add_marker(pytest.mark.skip(reason=self.not_applicable_reason))
            keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        # Tests that unload a model go last: every model then loads once, not once per unload.
        items[:] = sorted(keep, key=lambda item: item.get_closest_marker("unloads") is not None)

    # --- results --------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.excinfo is not None and report.failed:
            exc = call.excinfo.value
            names = {cls.__name__ for cls in type(exc).__mro__}
            timed_out = "Timeout" in str(exc)[:40] and type(exc).__name__ == "Failed"
            if timed_out:
                report.user_properties.append(
                    ("conformance_error", f"the test did not finish within its timeout: {str(exc).splitlines()[0]}")
                )
            elif names & TRANSPORT_ERROR_NAMES:
                report.user_properties.append(("conformance_error", f"{type(exc).__name__}: {exc}"[:500]))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if _is_worker(self.config):
            return
        props = dict(report.user_properties)
        if "feature" not in props:
            return
        entry = self.results.setdefault(
            report.nodeid,
            {"id": props.get("test_id", report.nodeid), "feature": props["feature"], "level": props["level"], "surface": props["surface"],
             "status": "pass", "message": "", "duration_s": 0.0},
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        if entry["status"] != "pass":
            return  # the first non-pass phase decides
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry["status"], entry["message"] = "not_applicable", reason.removeprefix("Skipped: ")
        elif report.failed:
            error = props.get("conformance_error")
            if report.when != "call" or error:
                entry["status"] = "error"
                entry["message"] = error or _short(report)
            else:
                entry["status"], entry["message"] = "fail", _short(report)

    def summary(self) -> dict[str, Any]:
        def empty() -> dict[str, int]:
            return dict.fromkeys(STATES, 0)

        total = empty()
        by_level: dict[str, dict[str, int]] = {level: empty() for level in LEVELS}
        by_surface: dict[str, dict[str, int]] = {}
        for entry in self.results.values():
            total[entry["status"]] += 1
            by_level.setdefault(entry["level"], empty())[entry["status"]] += 1
            by_surface.setdefault(entry["surface"], empty())[entry["status"]] += 1
        return {"total": total, "by_level": by_level, "by_surface": by_surface}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        tr = terminalreporter
        tr.section("Ollama conformance")
        if self.target is not None:
            tr.write_line(f"target {self.target.public_url()} ({self.target.profile}), version {self.target.version}, "
                          f"chat model {self.target.chat_model}, embed model {self.target.embed_model}")
        elif self.target_error:
            tr.write_line(f"target unusable: {self.target_error}", red=True)
        elif self.not_applicable_reason:
            tr.write_line(f"target {self.config.option.target} not contacted; every test is not applicable: "
                          f"{self.not_applicable_reason}", yellow=True)
        summary = self.summary()
        header = f"{'':<20}" + "".join(f"{s:>16}" for s in STATES)
        tr.write_line(header)
        rows = [("total", summary["total"])]
        rows += [(f"level {k}", v) for k, v in summary["by_level"].items() if sum(v.values())]
        rows += [(f"surface {k}", v) for k, v in sorted(summary["by_surface"].items())]
        for name, counts in rows:
            tr.write_line(f"{name:<20}" + "".join(f"{counts[s]:>16}" for s in STATES))
        failing = [e for e in self.results.values() if e["status"] in ("fail", "error")]
        for entry in failing[:60]:
            tr.write_line(f"{entry['status'].upper():<6} {entry['level']:<6} {entry['feature']}: {entry['id']}: "
                          f"{entry['message'].splitlines()[0][:160] if entry['message'] else ''}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        path = self.config.option.conformance_json
        if not path or _is_worker(self.config):
            return
        from ollama_conformance.conformance.results import build_results, write_results

        write_results(Path(path), build_results(self, finished=time.time()))


def _short(report: pytest.TestReport) -> str:
    """The assertion message, not the whole traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)[:2000]
    return str(report.longrepr)[-2000:]

