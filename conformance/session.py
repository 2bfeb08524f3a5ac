"""One conformance run inside pytest: the suite's options, the target, the selection and the recorded results.

Imported by the entry-point plugin (`conformance/plugin.py`) only when the suite is collected, so other pytest
runs pay nothing for it. Result states (`conformance.results.STATES`): pass, fail, inconclusive, not_applicable
(a pytest skip, always with the reason), error (the target was unreachable, stalled past the timeout, or the
harness broke). A target that resets or drops a connection it accepted, in the middle of a test, *fails* that test:
the server broke the exchange, and the message names the request ("the target reset the connection during POST
/api/chat: ..."). `--ollama-json PATH` writes the results file (`results.schema.json`),
pytest's `--junitxml PATH` the JUnit XML, whose states are made to agree with the JSON at the end of the run.

With pytest-xdist (`-n N`) the controller discovers the target once and hands it to the workers. The
keep_alive/unload tests watch /api/ps, which tests running beside them may refill: run them without `-n`
(`ollama-conformance check` does by default) when a faithful server shows them red under `-n`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollama_conformance.conformance.plugin import SUITE_DIR
from ollama_conformance.conformance.results import DEFAULT_GATE, GATES, LEVELS, STATES

DEFAULT_TIMEOUT_S = 120.0
# Discovery of a reference backend we started waits for its first model load (50-90 s measured under load on
# the shared 2-core machine); a --ollama-target gets the per-test timeout unless --ollama-discovery-timeout says otherwise.
COLD_DISCOVERY_TIMEOUT_S = 300.0
# Exceptions meaning "the target could not be talked to", reported as error rather than fail.
TRANSPORT_ERROR_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "StreamStalled",
    "TargetUnavailable",
}
# Exceptions meaning "the target broke off an exchange it had accepted" (a reset, a close before or in the middle
# of the answer, an answer that is not HTTP): the server's failure, reported as fail in whatever phase it happened.
CONNECTION_DROPPED_NAMES = {"ReadError", "WriteError", "RemoteProtocolError"}
HEAD_BYTES = 2048  # of a request or response body kept in the results
MESSAGE_CHARS = 2000
CONSOLE_LINE_CHARS = 200
CURL_BODY_CHARS = 4096


def add_options(parser: pytest.Parser) -> None:
    """The suite's options, all prefixed `--ollama-` so they cannot collide with another project's plugin."""
    group = parser.getgroup("ollama-conformance", "Ollama conformance suite (present only when the suite is collected)")
    add = group.addoption
    add("--ollama-target", dest="ollama_target", default=None, metavar="URL",
        help="base URL of the server under test; none: start the reference backend")
    add("--ollama-profile", dest="ollama_profile", default=None, choices=["local", "cloud", "reference"], help="target profile (defaults)")
    add("--ollama-api-key-env", dest="ollama_api_key_env", default=None, metavar="NAME",
        help="environment variable holding the API key (cloud: OLLAMA_API_KEY)")
    add("--ollama-model", dest="ollama_model", default=None, metavar="M", help="chat/generate model (default: discovered)")
    add("--ollama-embed-model", dest="ollama_embed_model", default=None, metavar="E", help="embedding model (default: discovered)")
    add("--ollama-surface", dest="ollama_surface", default=None, metavar="LIST",
        help="comma-separated surfaces to test: native,openai,anthropic,cloud")
    add("--ollama-level", dest="ollama_level", default=None, choices=LEVELS, help="test this level and stricter ones")
    add("--ollama-feature", dest="ollama_feature", action="append", default=[], metavar="GLOB", help="feature id glob (repeatable)")
    add("--ollama-allow-mutations", dest="ollama_allow_mutations", action="store_true", default=False,
        help="allow copy/delete/create on the target")
    add("--ollama-registry", dest="ollama_registry", default=None, metavar="URL",
        help="OCI registry for the pull/push tests, reachable from the target (default: start the bundled one)")
    add("--ollama-gate", dest="ollama_gate", default=DEFAULT_GATE, choices=GATES,
        help="recorded in the results: the level at and above which a test that did not pass fails the run")
    add("--ollama-json", dest="ollama_json", default=None, metavar="PATH", help="write the results JSON file")
    add("--ollama-timeout", dest="ollama_timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help="per-test timeout")
    add("--ollama-discovery-timeout", dest="ollama_discovery_timeout", type=float, default=None, metavar="S",
        help="per-request timeout of discovery and of the reference backend's warm-up (default: "
             f"{COLD_DISCOVERY_TIMEOUT_S:g} when the backend is started here, else --ollama-timeout)")
    add("--ollama-max-requests", dest="ollama_max_requests", type=int, default=None, metavar="N",
        help="send at most N requests from the tests (then: not applicable); keeps a cloud run cheap")
    add("--ollama-traceback-file", dest="ollama_traceback_file", default=None, metavar="PATH",
        help="where a harness error's traceback goes (one line is printed)")


def add_markers(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "feature(id): the spec/features.yaml feature a conformance test checks")
    config.addinivalue_line("markers", "mutating: the test changes the target's models (needs --ollama-allow-mutations)")
    config.addinivalue_line("markers", "unloads: the test unloads a model (run last, so models reload once)")
    config.addinivalue_line("markers", "requires_surface(*names): a cross-surface test; not applicable unless every "
                                       "named surface is present")
    config.addinivalue_line("markers", "requires_route(method, path, feature=id): not applicable when the target does "
                                       "not serve that route (a precondition owned by another feature)")


# --- per-test recording (one test at a time per process: xdist workers are processes) ----------------------


@dataclass
class TestRecord:
    exact: list[str] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    chunk_times_ms: list[float] | None = None  # arrival times of the last stream read (conformance.checks)
    judged: int | None = None  # index in `exchanges` of the answer the test judged last (conformance.checks)


CURRENT = TestRecord()


def record_exact_difference(message: str) -> None:
    """An exact-grade difference from Ollama (conformance.checks.exact): recorded, the test goes on."""
    CURRENT.exact.append(str(message))


def record_chunk_times(times_ms: list[float]) -> None:
    """Arrival times (ms after the request) of each item of the test's last stream (conformance.checks)."""
    CURRENT.chunk_times_ms = list(times_ms)


def record_response(response: httpx.Response) -> None:
    """httpx response hook of the suite's clients: the request and the answer's status and headers."""
    exchange = _exchange_of(response.request, response.status_code)
    exchange["headers"] = {k: v for k, v in response.headers.items() if k.lower() not in ("set-cookie", "authorization")}
    CURRENT.exchanges.append(exchange)


def record_unanswered(request: httpx.Request) -> None:
    """A request the target dropped before its status line came (no response hook ran): the exchange, status null."""
    if not CURRENT.exchanges or CURRENT.exchanges[-1]["_request"] is not request:
        CURRENT.exchanges.append(_exchange_of(request, None))


def _exchange_of(request: httpx.Request, status: int | None) -> dict[str, Any]:
    try:
        body = request.content.decode("utf-8", "replace")
    except httpx.RequestNotRead:
        body = ""
    # the headers that change an answer (curl sends `accept: */*` itself)
    headers = {k: v for k, v in request.headers.items()
               if k.lower() in ("content-type", "accept", "anthropic-version") and v != "*/*"}
    return {
        "request": {"method": request.method, "url": _public(str(request.url)), "body_head": body[:HEAD_BYTES]},
        "status": status,
        "headers": {},
        "body_head": "",
        "_body": body,
        "_request_headers": headers,
        "_auth": "authorization" in {k.lower() for k in request.headers},
        "_request": request,
    }


def exchange_count() -> int:
    return len(CURRENT.exchanges)


def record_judged(index: int | None) -> None:
    """The exchange a check is judging now: a failure shows it (and its curl line), not merely the last one sent."""
    if index is not None and 0 <= index < len(CURRENT.exchanges):
        CURRENT.judged = index


def record_body(text: str) -> None:
    """The body of the last exchange, once read (conformance.checks.Api.call reads it whole)."""
    if CURRENT.exchanges:
        CURRENT.exchanges[-1]["body_head"] = text[:HEAD_BYTES]


def _public(url: str) -> str:
    from ollama_conformance.conformance.target import redact_url

    split = httpx.URL(url)
    return redact_url(str(split.copy_with(query=None))) + (f"?{split.query.decode()}" if split.query and b"key" not in split.query.lower() else "")


def curl_line(exchange: dict[str, Any], api_key_env: str) -> str:
    """A curl command reproducing the exchange's request; the key (if one was sent) as a $VARIABLE."""
    request = exchange["request"]
    parts = ["curl", "-sS", "-X", request["method"], shlex.quote(request["url"])]
    for name, value in exchange.get("_request_headers", {}).items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if exchange.get("_auth"):
        parts += ["-H", f'"Authorization: Bearer ${api_key_env}"']
    body = exchange.get("_body") or ""
    if body and ("\n" in body or not body.isprintable() or len(body) > CURL_BODY_CHARS):
        # multipart, binary or long: one line still, the body itself is in the results JSON (exchange.request)
        parts += ["--data-binary", "@request-body", f"# {len(body.encode())} bytes, see exchange.request.body_head"]
    elif body:
        parts += ["-d", shlex.quote(body)]
    return " ".join(parts)


def public_exchange(exchange: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in exchange.items() if not k.startswith("_")}


# --- the session ------------------------------------------------------------------------------------------


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
        self._routes: dict[tuple[str, str], str | None] = {}
        self._capability_probes: dict[tuple[str, str], tuple[bool, str]] = {}
        self._check_options()

    def option(self, name: str) -> Any:
        return getattr(self.config.option, f"ollama_{name}", None)

    def _surfaces_selected(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in (self.option("surface") or "").split(",") if s.strip())

    def _profile(self) -> str:
        return self.option("profile") or ("local" if self.option("target") else "reference")

    def _check_options(self) -> None:
        """Bad options stop the run at once with one line (pytest exit status 4), before any test runs."""
        from ollama_conformance.conformance import target as target_mod
        from ollama_conformance.errors import UsageError

        opt = self.config.option
        try:
            if opt.ollama_target:
                opt.ollama_target = target_mod.normalise_url(opt.ollama_target)
            if opt.ollama_timeout <= 0:
                raise UsageError("--ollama-timeout must be a positive number of seconds")
            if opt.ollama_discovery_timeout is not None and opt.ollama_discovery_timeout <= 0:
                raise UsageError("--ollama-discovery-timeout must be a positive number of seconds")
            unknown = [s for s in self._surfaces_selected() if s not in target_mod.SURFACES]
            if unknown:
                raise UsageError(f"unknown surface {unknown[0]!r}; choose from {', '.join(target_mod.SURFACES)}")
            profile = self._profile()
            self.not_applicable_reason = target_mod.missing_key_reason(profile, opt.ollama_api_key_env)
            if self.not_applicable_reason and not opt.ollama_target:
                opt.ollama_target = target_mod.DEFAULT_URLS[profile]  # named in the results file; never contacted
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
            profile = self._profile()
            if profile in target_mod.DEFAULT_URLS and not opt.ollama_target:
                opt.ollama_target = target_mod.DEFAULT_URLS[profile]  # local: localhost:11434; cloud: ollama.com
            api_key = target_mod.resolve_api_key(profile, opt.ollama_api_key_env)
            worker = getattr(self.config, "workerinput", {})
            if worker.get("conformance_target"):
                data = worker["conformance_target"]
                if data.get("error"):
                    self.target_error = data["error"]
                    return None
                self.target = target_mod.from_json(
                    data, url=worker["conformance_url"], api_key=api_key,
                    timeout_s=opt.ollama_timeout, allow_mutations=opt.ollama_allow_mutations,
                )
                return self.target
            if opt.ollama_target:
                url = target_mod.normalise_url(opt.ollama_target)
            else:
                from ollama_conformance.reference_backend.launcher import ReferenceBackend

                self.backend = ReferenceBackend()
                url = self.backend.start()
                self._warm_up(url)
            self.target = target_mod.discover(
                url, profile=profile, api_key=api_key, chat_model=opt.ollama_model,
                embed_model=opt.ollama_embed_model, timeout_s=self._discovery_timeout(),
                allow_mutations=opt.ollama_allow_mutations, surfaces=self._surfaces_selected(),
            )
            self.target.timeout_s = opt.ollama_timeout
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from exc
        except TargetError as exc:
            self.target_error = str(exc)
        except ImportError as exc:
            self.target_error = f"cannot start the reference backend ({exc}); install ollama-conformance[reference]"
        return self.target

    def undiscovered_surfaces(self) -> dict[str, dict[str, Any]]:
        """The `surfaces` of a run whose target was never discovered: absent with the reason, or not selected."""
        from ollama_conformance.conformance.target import SURFACES

        selected = self._surfaces_selected()
        detail = (self.target_error or self.not_applicable_reason or "not contacted")[:200]
        return {s: {"state": "not_selected" if selected and s not in selected else "absent",
                    "evidence": {"request": "discovery", "status": None, "detail": detail}} for s in SURFACES}

    def _discovery_timeout(self) -> float:
        given = self.option("discovery_timeout")
        if given is not None:
            return float(given)
        timeout = self.option("timeout")
        return max(COLD_DISCOVERY_TIMEOUT_S, timeout) if self.backend is not None else timeout

    def _warm_up(self, url: str) -> None:
        """Load the models of the backend we started, so no test (nor discovery) pays for the first load.

        A failed warm-up is not fatal here: discovery then reports what is wrong with one clear line."""
        from ollama_conformance.conformance.warmup import warm_up

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"warming up the reference backend at {url} (loading models)")
        problem = warm_up(url, chat_model=self.option("model"), embed_model=self.option("embed_model"),
                          timeout_s=self._discovery_timeout())
        if problem and reporter is not None:
            reporter.write_line(f"warm-up: {problem}", yellow=True)

    def route_missing(self, method: str, path: str) -> str | None:
        """Whether the target lacks a route another feature needs: the evidence line, or None (it is served).
        Asked once per route per run."""
        key = (method.upper(), path)
        if key not in self._routes:
            from ollama_conformance.conformance.target import _ask, _route_absent

            target = self.target
            with httpx.Client(base_url=target.url, headers=target.headers(), timeout=target.timeout_s) as client:
                answer = _ask(client, key[0], path)
            self._routes[key] = answer.evidence.short() if _route_absent(answer, native=path.startswith("/api/")) else None
        return self._routes[key]

    def capability_probe(self, model: str, capability: str) -> tuple[bool, str]:
        """For a model whose /api/show leaves out `capability`: (run anyway, evidence) of a one-token request that
        needs it. Refused as Ollama refuses it (refuses_capability): not applicable; served, crashed or unanswered:
        its tests run, the claim does not excuse them; no probe for that capability: (False, why). Asked once per model and capability per run."""
        key = (model, capability)
        if key not in self._capability_probes:
            from ollama_conformance.conformance.target import probe_capability, refuses_capability

            target = self.target
            with httpx.Client(base_url=target.url, headers=target.headers(), timeout=target.timeout_s) as client:
                evidence = probe_capability(client, model, capability)
            if evidence is None:
                self._capability_probes[key] = (False, "no request can show the claim false")
            else:
                self._capability_probes[key] = (not refuses_capability(evidence, capability), evidence.short())
        return self._capability_probes[key]

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
        surfaces = set(self._surfaces_selected())
        level = self.option("level")
        levels = LEVELS[: LEVELS.index(level) + 1] if level else LEVELS
        globs = self.option("feature") or []
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
                and (not globs or any(fnmatch.fnmatch(feature.id, g) for g in globs))
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
                item.add_marker(pytest.mark.timeout(self.option("timeout")))
            if self.not_applicable_reason:  # skipped before any fixture: no discovery, no request
                item.add_marker(pytest.mark.skip(reason=self.not_applicable_reason))
            keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        # Tests that unload a model go last: every model then loads once, not once per unload.
        items[:] = sorted(keep, key=lambda item: item.get_closest_marker("unloads") is not None)

    # --- results --------------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        CURRENT.exact.clear()
        CURRENT.exchanges.clear()
        CURRENT.chunk_times_ms = None
        CURRENT.judged = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if "feature" not in dict(item.user_properties):
            return report
        props = report.user_properties
        exc = call.excinfo.value if call.excinfo is not None else None
        names = {cls.__name__ for cls in type(exc).__mro__} if exc is not None else set()
        if "Inconclusive" in names:
            props.append(("conformance_inconclusive", str(exc)[:MESSAGE_CHARS]))
        elif exc is not None and report.failed:
            timed_out = "Timeout" in str(exc)[:40] and type(exc).__name__ == "Failed"
            if timed_out:
                props.append(("conformance_error", f"the test did not finish within its timeout: {str(exc).splitlines()[0]}"))
            elif dropped := _connection_dropped(exc):
                props.append(("conformance_dropped", dropped))
            elif names & TRANSPORT_ERROR_NAMES:
                props.append(("conformance_error", f"{type(exc).__name__}: {exc}"[:500]))
        if exc is not None and report.failed and isinstance(exc, AssertionError):
            props.append(("conformance_message", clean_message(str(exc))))
        if call.when == "call" and CURRENT.exact:
            props.append(("exact_difference", clean_message(CURRENT.exact[0])))
        if call.when == "call" and CURRENT.chunk_times_ms is not None:
            props.append(("chunk_times_ms", CURRENT.chunk_times_ms[:500]))
        if report.when == "setup" and report.failed and {"conformance_absent", "conformance_dropped"} & set(dict(props)):
            report.when = "call"  # an absent surface's test *fails* (pytest and JUnit would say error for a setup failure)
        if (report.failed or "Inconclusive" in names) and CURRENT.exchanges and "conformance_absent" not in dict(props):
            last = CURRENT.exchanges[CURRENT.judged if CURRENT.judged is not None and not dropped_now(props) else -1]
            props.append(("curl", curl_line(last, self.option("api_key_env") or "OLLAMA_API_KEY")))
            props.append(("exchange", json.dumps(public_exchange(last))))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if _is_worker(self.config):
            return
        props = dict(report.user_properties)
        if "feature" not in props:
            return
        entry = self.results.setdefault(
            report.nodeid,
            {"id": props.get("test_id", report.nodeid), "feature": props["feature"], "level": props["level"],
             "surface": props["surface"], "status": "pass", "exact_status": "pass", "exact_message": "",
             "capability_unknown": False, "exchange": None, "curl": None, "message": "", "duration_s": 0.0},
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        entry["capability_unknown"] = bool(props.get("capability_unknown")) or entry["capability_unknown"]
        if props.get("chunk_times_ms") is not None:
            entry["chunk_times_ms"] = props["chunk_times_ms"]
        if entry["status"] == "pass" and props.get("exact_difference") and report.when == "call" and report.passed:
            entry["exact_status"], entry["exact_message"] = "fail", props["exact_difference"]
        if entry["status"] != "pass":
            return  # the first non-pass phase decides
        status, message = _status_of(report, props)
        if status == "pass":
            return
        entry["status"] = entry["exact_status"] = status
        entry["message"] = message
        if status in ("fail", "error", "inconclusive"):
            entry["curl"] = props.get("curl")
            entry["exchange"] = json.loads(props["exchange"]) if props.get("exchange") else None
        if entry["exact_message"] == "" and status != "not_applicable":
            entry["exact_message"] = message

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        tr = terminalreporter
        tr.section("Ollama conformance")
        if self.target is not None:
            tr.write_line(f"target {self.target.public_url()} ({self.target.profile}), version {self.target.version}, "
                          f"chat model {self.target.chat_model}, embed model {self.target.embed_model}")
            for name, state in self.target.surface_states().items():
                evidence = state["evidence"]
                line = f"  surface {name:<10} {state['state']}"
                if state["state"] == "absent" and evidence:
                    line += f": {self.target.absent_reason(name)}"
                tr.write_line(line, red=state["state"] == "absent")
        elif self.target_error:
            tr.write_line(f"target unusable: {self.target_error}", red=True)
        elif self.not_applicable_reason:
            tr.write_line(f"target {self.option('target')} not contacted; every test is not applicable: "
                          f"{self.not_applicable_reason}", yellow=True)
        from ollama_conformance.conformance.results import summarise

        summary = summarise(list(self.results.values()))
        tr.write_line(f"{'':<20}" + "".join(f"{s:>15}" for s in STATES))
        rows = [("total", summary["total"]), ("exact total", summary["exact"]["total"])]
        rows += [(f"level {k}", v) for k, v in summary["by_level"].items() if sum(v.values())]
        rows += [(f"surface {k}", v) for k, v in sorted(summary["by_surface"].items())]
        for name, counts in rows:
            tr.write_line(f"{name:<20}" + "".join(f"{counts[s]:>15}" for s in STATES))
        self._write_failures(tr)

    def _write_failures(self, tr: Any) -> None:
        """One bounded line per test that did not pass (and its curl line); a cause shared by many (an absent
        surface, an unusable target) is shown once with the number of tests it applies to."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        single: list[dict[str, Any]] = []
        for entry in self.results.values():
            if entry["status"] not in ("fail", "error", "inconclusive"):
                continue
            head = entry["message"].splitlines()[0] if entry["message"] else ""
            unserved = _unserved_route(entry.get("exchange"))
            if self._is_shared_cause(head):
                grouped.setdefault(head, []).append(entry)
            elif unserved:  # a route missing from a present surface: one line for all the tests that hit it
                grouped.setdefault(unserved, []).append(entry)
            else:
                single.append(entry)
        for cause, entries in grouped.items():
            levels = ", ".join(f"{n} {lv}" for lv in LEVELS if (n := sum(e["level"] == lv for e in entries)))
            tr.write_line(f"{entries[0]['status'].upper():<12} {len(entries)} tests ({levels}): {cause[:CONSOLE_LINE_CHARS]}",
                          red=True)
        for entry in single[:100]:
            head = entry["message"].splitlines()[0] if entry["message"] else ""
            tr.write_line(f"{entry['status'].upper():<12} {entry['level']:<6} {entry['feature']}: {entry['id']}: "
                          f"{head[:CONSOLE_LINE_CHARS]}")
            if entry.get("curl"):
                tr.write_line(f"{'':<13}{entry['curl'][:CONSOLE_LINE_CHARS * 2]}")
        if len(single) > 100:
            tr.write_line(f"... and {len(single) - 100} more (see the results JSON)")

    def _is_shared_cause(self, head: str) -> bool:
        if " surface absent: " in head:
            return True
        return bool(self.target_error) and self.target_error[:80] in head

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if _is_worker(self.config):
            return
        try:
            path = self.option("json")
            if path:
                from ollama_conformance.conformance.results import build_results, write_results

                write_results(Path(path), build_results(self, finished=time.time()))
            junit = getattr(self.config.option, "xmlpath", None)
            if junit and Path(junit).exists():
                from ollama_conformance.conformance.junit import align_junit

                align_junit(Path(junit), {e["id"]: e for e in self.results.values()})
        except Exception as exc:  # a bug of ours: one line, the traceback in a file, pytest's internal-error status
            self._harness_error(exc)
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _harness_error(self, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        path = self.option("traceback_file")
        if path:
            Path(path).write_text(text, encoding="utf-8")
        where = f"traceback in {path}" if path else "traceback follows"
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        print(f"ollama-conformance: internal error: {type(exc).__name__}: {first} ({where})", flush=True)
        if not path:
            print(text, flush=True)

    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> bool | None:
        """A bug of the harness: the traceback goes to a file, one line to the console (exit 4 in `check`)."""
        if not self.option("traceback_file") or excinfo is None:
            return None
        self._harness_error(excinfo.value)
        return True


def dropped_now(props: list[tuple[str, Any]]) -> bool:
    """A dropped connection names the request it broke off (the last one), whatever was judged before."""
    return "conformance_dropped" in dict(props)


def _unserved_route(exchange: dict[str, Any] | None) -> str | None:
    """"POST /api/chat not served: 404 ..." when a test's last exchange hit a route the target does not have."""
    if not exchange or exchange.get("status") not in (404, 405, 501):
        return None
    try:
        body = json.loads(exchange.get("body_head") or "")
    except ValueError:
        body = None
    if exchange["status"] != 501 and isinstance(body, dict) and ("error" in body or body.get("type") == "error"):
        return None  # an error of the route itself (e.g. model not found); 501 Not Implemented is never one
    request = exchange["request"]
    path = httpx.URL(request["url"]).path
    text = " ".join(str(exchange.get("body_head") or "").split())[:60]
    return f"{request['method']} {path} not served: {exchange['status']} {text!r}"


def _status_of(report: pytest.TestReport, props: dict[str, Any]) -> tuple[str, str]:
    """The state a report phase gives a test, and its message."""
    if props.get("conformance_inconclusive"):
        return "inconclusive", props["conformance_inconclusive"]
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return "not_applicable", reason.removeprefix("Skipped: ")
    if not report.failed:
        return "pass", ""
    if props.get("conformance_absent"):
        return "fail", props["conformance_absent"]
    if props.get("conformance_dropped"):
        return "fail", props["conformance_dropped"]
    error = props.get("conformance_error")
    if report.when != "call" or error:
        return "error", error or props.get("conformance_message") or _short(report)
    return "fail", props.get("conformance_message") or _short(report)


def _connection_dropped(exc: BaseException) -> str | None:
    """"the target reset the connection during POST /api/chat: ReadError: ..." when `exc` (or, for an exception
    group such as a property-based test's, every exception in it) is the target breaking off an exchange."""
    leaves = _leaves(exc)
    if not leaves or not all(_names(leaf) & CONNECTION_DROPPED_NAMES for leaf in leaves):
        return None
    first = leaves[0]
    try:
        request = first.request  # type: ignore[attr-defined]  # httpx.RequestError: the request it was sending
    except (AttributeError, RuntimeError):
        during = ""
    else:
        during = f" during {request.method} {request.url.path}"
        record_unanswered(request)  # the exchange shown (and its curl line) is this request, not the one before
    text = str(first) or type(first).__name__
    verb = "reset" if "reset" in text.lower() else "closed"
    return f"the target {verb} the connection{during}: {type(first).__name__}: {text}"[:500]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def clean_message(text: str) -> str:
    """A failure's message as the suite wrote it: pytest's assertion introspection (the `assert ...` explanation
    it appends, with reprs of bound methods and their addresses) cut off, so the same fault reads the same in
    every run."""
    head, _, _ = text.partition("\nassert ")
    if not head.strip():  # a bare `assert` without a message: its first line only
        head = text.splitlines()[0] if text else ""
    return _ADDRESS.sub("", head).strip()[:MESSAGE_CHARS]


def _short(report: pytest.TestReport) -> str:
    """The assertion message, not the whole traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message)[:MESSAGE_CHARS]
    return str(report.longrepr)[-MESSAGE_CHARS:]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")
