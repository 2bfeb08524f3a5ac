"""`ollama-conformance validate FILE|DIR...`: check recorded Ollama traffic (VCR cassettes, HAR, httprr, JSON
bodies compact or pretty-printed, arrays of exchanges or of stream items, top-level objects of bodies, NDJSON/SSE
bodies) against the spec, as the Ollama version that answered it behaved. Many files in one process: a folder is
read recursively.

Per exchange: `valid`, `invalid at $.path: reason`, or, when the version is unknown and the exchange fits an
older Ollama only, `valid for <= X`; then which route it was judged as and why. Per file: a verdict line, or one
line saying why it is not a recording. Exit 0 all valid, 1 any invalid, 2 bad usage, or a file named on the
command line that is not a recording (a single such file: one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HELP = "validate recorded Ollama traffic (VCR cassettes, HAR, httprr, JSON/NDJSON/SSE bodies) against the spec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recording files, or folders (read recursively)")
    parser.add_argument(
        "--ollama-version",
        metavar="VERSION",
        help="judge as this Ollama version (default: the version the file shows in a GET /api/version, else the "
        "spec's version, with 'valid for <= X' when only an older Ollama fits)",
    )
    parser.add_argument(
        "--grade",
        choices=("exact", "compatible"),
        help="exact: as Ollama itself answers; compatible: what the official clients rely on "
        "(default: exact, compatible for client-object records)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="'METHOD /path'",
        help="the endpoint a bare response body answers (default: told from the content)",
    )


@dataclass
class Verdict:
    name: str
    state: str  # valid | invalid | older
    detail: str = ""

    def line(self) -> str:
        if self.state == "valid":
            return f"{self.name}: valid{self.detail}"
        if self.state == "older":
            return f"{self.name}: valid for <= {self.detail}"
        return f"{self.name}: invalid {self.detail}"


def _endpoint(text: str | None) -> tuple[str, str] | None:
    from ollama_conformance.errors import UsageError

    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or not parts[1].startswith("/"):
        raise UsageError(f"--endpoint {text!r}: expected 'METHOD /path', e.g. 'POST /api/chat'")
    return parts[0].upper(), parts[1]


def _reason(problem: str) -> str:
    # "item 3: at $.a: msg" -> "at $.a (item 3): msg"; other problems as they are
    head, sep, rest = problem.partition(": at ")
    if sep and head.startswith(("item", "body", "request")):
        where, _, message = rest.partition(": ")
        return f"at {where} ({head}): {message}"
    return problem


def judge(exchange: object, version: str | None, explicit: bool, grade: str | None) -> Verdict:
    """The verdict on one exchange: at `version`; when the version was not known, also at older versions."""
    from ollama_conformance.spec.documents import find_operation
    from ollama_conformance.spec.recordings import Exchange, check_exchange
    from ollama_conformance.spec.schemas import response_media
    from ollama_conformance.spec.versions import candidate_versions

    assert isinstance(exchange, Exchange)
    problems = check_exchange(exchange, version, grade)
    suffix = f" (Ollama {version})" if version else ""
    if not problems:
        return Verdict(exchange.name, "valid", suffix)
    if not explicit and find_operation(exchange.method, exchange.path) is not None:
        try:
            media = response_media(exchange.method, exchange.path, exchange.status, exchange.content_type) or {}
        except KeyError:
            media = {}
        request = None
        op = find_operation(exchange.method, exchange.path)
        if op is not None:
            request = op[2].get("requestBody")
        for candidate in candidate_versions({"media": media, "request": request, "all": _all_annotations()}):
            if candidate != version and not check_exchange(exchange, candidate, grade):
                return Verdict(exchange.name, "older", candidate)
    return Verdict(exchange.name, "invalid", _reason(problems[0]) + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))


def _all_annotations() -> object:
    """Every document, so the candidate versions cover annotations behind `$ref`s too."""
    from ollama_conformance import spec

    return [spec.document(surface) for surface in spec.SURFACES]


def _files(names: list[str]) -> list[tuple[str, bool]]:
    """(file, named on the command line) for every argument; a folder gives its files (recursively, sorted, no
    hidden ones)."""
    from ollama_conformance.errors import UsageError

    out: list[tuple[str, bool]] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            out += [(str(p), False) for p in found]
        elif path.is_file():
            out.append((name, True))
        else:
            raise UsageError(f"{name}: no such file")
    return out


def run(args: argparse.Namespace) -> int:
    from ollama_conformance.errors import UsageError
    from ollama_conformance.spec.recordings import RecordingFormatError, parse_file, shown_version
    from ollama_conformance.spec.versions import VersionError, parse_version

    if args.ollama_version:
        try:
            parse_version(args.ollama_version)
        except VersionError as exc:
            raise UsageError(str(exc)) from exc
    endpoint = _endpoint(args.endpoint)
    files = _files(args.files)
    if len(files) == 1 and files[0][1]:  # one file: a file that is no recording is a usage error, one line
        try:
            parsed: list[tuple[str, bool, object]] = [(files[0][0], True, parse_file(Path(files[0][0]), files[0][0], endpoint))]
        except RecordingFormatError as exc:
            raise UsageError(str(exc)) from exc
    else:
        parsed = []
        for name, named in files:
            try:
                parsed.append((name, named, parse_file(Path(name), name, endpoint)))
            except RecordingFormatError as exc:
                parsed.append((name, named, exc))
    invalid = total = 0
    not_recordings = named_not_recordings = 0
    for name, named, exchanges in parsed:
        if isinstance(exchanges, RecordingFormatError):
            reason = str(exchanges).removeprefix(f"{name}: ")
            print(f"{name}: not a recording: {reason}")
            not_recordings += 1
            named_not_recordings += named
            continue
        assert isinstance(exchanges, list)
        version = args.ollama_version or shown_version(exchanges)
        explicit = version is not None
        if not exchanges:
            print(f"{name}: no Ollama exchange found (a recording of other servers only)")
            continue
        bad = 0
        for exchange in exchanges:
            verdict = judge(exchange, version, explicit, args.grade)
            bad += verdict.state == "invalid"
            print(verdict.line())
            print(f"    judged as {exchange.method} {exchange.path}: {exchange.route_reason or 'the recording'}"
                  + "".join(f"; {note}" for note in exchange.notes))
        total += len(exchanges)
        invalid += bad
        count = f"{len(exchanges)} exchange{'s' if len(exchanges) != 1 else ''}"
        print(f"{name}: {'invalid' if bad else 'valid'} ({count}{f', {bad} invalid' if bad else ''})")
    files_text = f"{len(parsed)} file{'s' if len(parsed) != 1 else ''}"
    print(f"{files_text}, {total} exchanges, {total - invalid} valid, {invalid} invalid"
          + (f", {not_recordings} not recordings" if not_recordings else ""), file=sys.stderr)
    sys.stdout.flush()
    if invalid:
        return 1
    return 2 if named_not_recordings else 0
