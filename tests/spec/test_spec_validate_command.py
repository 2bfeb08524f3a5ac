"""`ollama-conformance validate FILE...`: every recording format it reads, the verdict lines, the version it judges
by, the exit codes; and on the shared recordings, every exchange valid for the version that made it.

The small recordings here are written by the tests (the shapes of vcrpy, Ruby VCR, Polly/HAR and httprr files),
with Ollama bodies as 0.33 sends them; the third-party recordings are only read from their folder.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from recordings_check import BODY_ONLY, CLIENT_FILTERED, EXPECTED_FAILURES, RECORDED_VERSIONS, recording_files

from tests.conftest import require_recordings

TS = "2026-08-20T13:48:21.068526Z"
CHUNK = {"model": "gemma3:270m", "created_at": TS, "message": {"role": "assistant", "content": "Hi"}, "done": False}
FINAL = {
    "model": "gemma3:270m", "created_at": TS, "message": {"role": "assistant", "content": ""}, "done": True,
    "done_reason": "stop", "total_duration": 9, "load_duration": 1, "prompt_eval_count": 3,
    "prompt_eval_duration": 2, "eval_count": 1, "eval_duration": 3,
}  # fmt: skip
NDJSON_BODY = json.dumps(CHUNK) + "\n" + json.dumps(FINAL) + "\n"
CHAT_REQUEST = {"model": "gemma3:270m", "messages": [{"role": "user", "content": "Hi"}]}
OLD_TOOL_ANSWER = {  # an Ollama before 0.12.6: the first tool call's function.index (0) left out by omitempty
    **FINAL,
    "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
}
SSE_CHUNK = {
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp_ollama",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
}  # fmt: skip
SSE_FINISH = {**SSE_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
SSE_BODY = f"data: {json.dumps(SSE_CHUNK)}\n\ndata: {json.dumps(SSE_FINISH)}\n\ndata: [DONE]\n\n"


def _validate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The command in this process (the spec loads once); `_validate_subprocess` for the real exit path."""
    from ollama_conformance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", *map(str, args)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _verdicts(stdout: str) -> list[str]:
    """The exchange verdict lines ("FILE#N METHOD PATH STATUS: verdict"), without the route and file lines."""
    return [line for line in stdout.splitlines() if "#" in line.split(" ", 1)[0] and not line.startswith(" ")]


def _validate_subprocess(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollama_conformance", "validate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _har_entry(url: str, request: object, status: int, content_type: str, body: str, *, b64: bool = False) -> dict:
    text = base64.b64encode(body.encode()).decode() if b64 else body
    content = {"mimeType": content_type, "text": text, "size": len(body)}
    if b64:
        content["encoding"] = "base64"
    return {
        "request": {"method": "POST", "url": url, "headers": [], "postData": {"mimeType": "application/json",
                                                                             "text": json.dumps(request)}},
        "response": {"status": status, "headers": [{"name": "Content-Type", "value": content_type}], "content": content},
    }  # fmt: skip


def _vcrpy(uri: str, request: object, body: str, content_type: str | None) -> dict:
    headers = {"Content-Type": [content_type]} if content_type else {}
    return {
        "interactions": [
            {
                "request": {"body": json.dumps(request), "headers": {}, "method": "POST", "uri": uri},
                "response": {"body": {"string": body}, "headers": headers, "status": {"code": 200, "message": "OK"}},
            }
        ],
        "version": 1,
    }


def test_har_exchanges_with_ollama_are_validated_and_others_ignored(tmp_path: Path) -> None:
    har = {"log": {"version": "1.2", "entries": [
        _har_entry("http://localhost:11434/api/chat", CHAT_REQUEST, 200, "application/x-ndjson", NDJSON_BODY),
        _har_entry("https://api.openai.com/v1/chat/completions", {}, 200, "application/json", "{}"),
        _har_entry("http://gpu-box:8080/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}, 200,
                   "text/event-stream", SSE_BODY),
    ]}}  # fmt: skip
    path = tmp_path / "session.har"
    path.write_text(json.dumps(har))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _verdicts(proc.stdout)
    assert len(lines) == 2, proc.stdout  # the api.openai.com entry is another provider's
    assert lines[0].endswith("#0 POST /api/chat 200: valid")
    assert lines[1].endswith("#2 POST /v1/chat/completions 200: valid")


def test_polly_recording_with_base64_bodies(tmp_path: Path) -> None:
    entry = _har_entry("http://127.0.0.1:11434/api/chat", CHAT_REQUEST, 200, "application/x-ndjson", NDJSON_BODY, b64=True)
    path = tmp_path / "recording.har"
    path.write_text(json.dumps({"log": {"_recordingName": "chat", "creator": {"name": "Polly.JS"}, "entries": [entry]}}))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /api/chat 200: valid")


@pytest.mark.parametrize("serializer", ["yaml", "json"])
def test_vcrpy_cassettes(tmp_path: Path, serializer: str) -> None:
    cassette = _vcrpy("http://localhost:11434/api/chat", CHAT_REQUEST, NDJSON_BODY, None)  # vcrpy kept no headers
    path = tmp_path / f"cassette.{serializer}"
    path.write_text(yaml.safe_dump(cassette) if serializer == "yaml" else json.dumps(cassette))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /api/chat 200: valid")


def test_ruby_vcr_json_cassette_with_a_base64_body(tmp_path: Path) -> None:
    cassette = {"http_interactions": [{
        "request": {"method": "post", "uri": "http://localhost:11434/v1/chat/completions",
                    "body": {"encoding": "UTF-8", "string": json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True})}},
        "response": {"status": {"code": 200, "message": "OK"},
                     "headers": {"Content-Type": ["text/event-stream"]},
                     "body": {"encoding": "ASCII-8BIT", "base64_string": base64.b64encode(SSE_BODY.encode()).decode()}},
    }], "recorded_with": "VCR 6.3.1"}  # fmt: skip
    path = tmp_path / "cassette.json"
    path.write_text(json.dumps(cassette))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /v1/chat/completions 200: valid")


def test_httprr_trace(tmp_path: Path) -> None:
    body = json.dumps(CHAT_REQUEST).encode()
    request = b"POST http://localhost:11434/api/chat HTTP/1.1\r\nHost: localhost:11434\r\n\r\n" + body
    chunk = NDJSON_BODY.encode()
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    )
    path = tmp_path / "TestChat.httprr"
    path.write_bytes(b"httprr trace v1\n" + f"{len(request)} {len(response)}\n".encode() + request + response)
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /api/chat 200: valid")


@pytest.mark.parametrize(
    ("name", "body", "endpoint"),
    [("chat.ndjson", NDJSON_BODY, "POST /api/chat"), ("chat.sse", SSE_BODY, "POST /v1/chat/completions")],
)
def test_bare_bodies_tell_their_endpoint(tmp_path: Path, name: str, body: str, endpoint: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith(f"{endpoint} 200: valid")


def test_an_invalid_exchange_says_where_and_why_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps(CHUNK) + "\n" + json.dumps({**FINAL, "done_reason": 3}) + "\n")
    proc = _validate(path)
    assert proc.returncode == 1
    assert "POST /api/chat 200: invalid at $.done_reason (item 1):" in proc.stdout, proc.stdout


def test_an_older_ollama_is_named_when_the_version_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(OLD_TOOL_ANSWER))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /api/chat 200: valid for <= 0.12.5")
    # told the version, it judges by it
    assert _verdicts(_validate("--ollama-version", "0.12.3", path).stdout).pop().endswith("valid (Ollama 0.12.3)")
    pinned = _validate("--ollama-version", "0.33.0-rc2", path)
    assert pinned.returncode == 1
    assert "invalid at $.message.tool_calls[0].function (body): 'index' is a required property" in pinned.stdout


def test_the_version_a_file_shows_is_the_one_it_is_judged_by(tmp_path: Path) -> None:
    version = _har_entry("http://localhost:11434/api/version", {}, 200, "application/json", '{"version":"0.12.3"}')
    version["request"]["method"] = "GET"
    chat = _har_entry("http://localhost:11434/api/chat", CHAT_REQUEST, 200, "application/json", json.dumps(OLD_TOOL_ANSWER))
    path = tmp_path / "with-version.har"
    path.write_text(json.dumps({"log": {"entries": [version, chat]}}))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[1].endswith("POST /api/chat 200: valid (Ollama 0.12.3)")


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "no such file"),
        (b"hello\n", [], "not a recording this tool reads"),
        (b"\xff\xfe\x00", [], "not text"),
        (b'{"a": 1}', [], "give it with --endpoint"),
        (b'{"interactions": "x"}', [], "interaction"),
        (NDJSON_BODY.encode(), ["--ollama-version", "twelve"], "is not an Ollama version"),
        (NDJSON_BODY.encode(), ["--endpoint", "chat"], "expected 'METHOD /path'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None, args: list[str], message: str) -> None:
    path = tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    proc = _validate(*args, path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_input_from_the_installed_command(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello\n")
    proc = _validate_subprocess(garbage)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"ollama-conformance validate: error: {garbage}: not a recording this tool reads " \
        "(VCR cassette, HAR, httprr, or a JSON/NDJSON/SSE body)"
    assert proc.stdout == ""


# --- the shared third-party recordings ---------------------------------------------------------------------


def _shared_cases() -> list[object]:
    from tests.conftest import recordings_dir

    root = recordings_dir()
    if not root.is_dir():
        return [pytest.param("", id="recordings-missing")]
    cases = []
    for rel in recording_files(root):
        if rel in EXPECTED_FAILURES:  # hand-edited: valid for no version
            continue
        cases.append(pytest.param(rel, id=rel))
    return cases


@pytest.mark.parametrize("rel", _shared_cases())
def test_shared_recordings_are_valid_for_the_version_that_made_them(rel: str) -> None:
    root = require_recordings()
    args: list[str | Path] = []
    version = RECORDED_VERSIONS.get(rel) or (CLIENT_FILTERED[rel][0] if rel in CLIENT_FILTERED else None)
    if version:
        args += ["--ollama-version", version]
    if rel in BODY_ONLY:
        method, path, _media = BODY_ONLY[rel]
        args += ["--endpoint", f"{method} {path}"]
    proc = _validate(*args, root / rel)
    if rel in CLIENT_FILTERED:  # the recorder dropped fields the server sent: invalid as recorded, and said so
        assert proc.returncode == 1 and "invalid at" in proc.stdout, proc.stdout + proc.stderr
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _verdicts(proc.stdout)
    assert lines and all(line.split(": ")[-1].startswith("valid") for line in lines), proc.stdout


def test_vcrpy_binary_gzip_body(tmp_path: Path) -> None:
    """vcrpy writes a bytes body as `!!binary`; a recorder that kept `Content-Encoding: gzip` keeps it compressed."""
    import gzip

    cassette = _vcrpy("http://localhost:11434/api/chat", CHAT_REQUEST, "", "application/x-ndjson")
    cassette["interactions"][0]["response"]["body"]["string"] = gzip.compress(NDJSON_BODY.encode())
    path = tmp_path / "gzip.yaml"
    path.write_text(yaml.safe_dump(cassette))
    assert "!!binary" in path.read_text()
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout)[-1].endswith("POST /api/chat 200: valid")


# --- any JSON layout, many files in one process ------------------------------------------------------------


def test_a_pretty_printed_body_is_one_json_value(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    path.write_text(json.dumps(FINAL, indent=2))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout) == [f"{path}#0 POST /api/chat 200: valid"]
    assert '    judged as POST /api/chat: the body has fields "message" and "created_at"' in proc.stdout


def test_pretty_printed_ndjson_is_read_value_after_value(tmp_path: Path) -> None:
    path = tmp_path / "stream.ndjson"
    path.write_text(json.dumps(CHUNK, indent=2) + "\n" + json.dumps(FINAL, indent=2) + "\n")
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not one per line (pretty-printed)" in proc.stdout
    broken = tmp_path / "broken.ndjson"  # a pretty stream that breaks the framing rule is still judged
    broken.write_text(json.dumps(FINAL, indent=2) + "\n" + json.dumps(CHUNK, indent=2) + "\n")
    proc = _validate(broken)
    assert proc.returncode == 1 and "exactly one done:true chunk, last, expected" in proc.stdout, proc.stdout


def test_an_array_of_stream_items_is_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "chunks.json"
    path.write_text(json.dumps([CHUNK, FINAL], indent=1))
    proc = _validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout) == [f"{path}#0 POST /api/chat 200: valid"]
    assert "a JSON array of 2 stream items" in proc.stdout
    broken = tmp_path / "broken.json"  # a stream whose final item breaks the schema: judged as that stream, invalid
    broken.write_text(json.dumps([CHUNK, {**FINAL, "done_reason": 3}]))
    proc = _validate(broken)
    assert proc.returncode == 1 and "invalid at $.done_reason (item 1)" in proc.stdout, proc.stdout


def test_an_array_of_exchanges_and_an_object_of_bodies(tmp_path: Path) -> None:
    exchanges = [
        {"request": {"method": "POST", "url": "http://localhost:11434/api/chat", "body": CHAT_REQUEST},
         "response": {"status": 200, "headers": {"Content-Type": "application/x-ndjson"}, "body": NDJSON_BODY}},
        {"request": {"method": "POST", "url": "https://api.openai.com/v1/chat/completions", "body": {}},
         "response": {"status": 200, "body": {}}},  # another provider's: left out
        {"request": {"method": "POST", "path": "/api/chat"}, "response": {"status_code": 200, "json": {**FINAL, "done_reason": 3}}},
    ]  # fmt: skip
    path = tmp_path / "exchanges.json"
    path.write_text(json.dumps(exchanges, indent=2))
    proc = _validate(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = _verdicts(proc.stdout)
    assert lines[0] == f"{path}#0 POST /api/chat 200: valid" and len(lines) == 2, proc.stdout
    assert lines[1].startswith(f"{path}#2 POST /api/chat 200: invalid at $.done_reason"), proc.stdout
    assert "judged as POST /api/chat: the recorded request (POST /api/chat)" in proc.stdout
    assert f"{path}: invalid (2 exchanges, 1 invalid)" in proc.stdout
    bodies = tmp_path / "fixtures.json"
    bodies.write_text(json.dumps({"chat": FINAL, "tags": {"models": []}, "version": {"version": "0.12.3"}, "comment": "x"}))
    proc = _validate(bodies)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout) == [f"{bodies}#chat POST /api/chat 200: valid (Ollama 0.12.3)",
                                      f"{bodies}#tags GET /api/tags 200: valid (Ollama 0.12.3)",
                                      f"{bodies}#version GET /api/version 200: valid (Ollama 0.12.3)"], proc.stdout


def test_a_folder_gives_every_file_a_verdict_or_a_reason(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "chat.ndjson").write_text(NDJSON_BODY)
    (tmp_path / "pretty.json").write_text(json.dumps(FINAL, indent=4))
    (tmp_path / "README.md").write_text("# fixtures\n")
    (tmp_path / "odd.json").write_text(json.dumps({"a": 1}))
    (tmp_path / ".hidden").write_text("x")
    proc = _validate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # files found in a folder that are no recordings: said
    out = proc.stdout.splitlines()
    assert f"{tmp_path / 'README.md'}: not a recording: not a recording this tool reads (VCR cassette, HAR, httprr, " \
           "or a JSON/NDJSON/SSE body)" in out
    assert any(line.startswith(f"{tmp_path / 'odd.json'}: not a recording: a JSON value whose endpoint cannot be told")
               for line in out), out
    assert f"{tmp_path / 'pretty.json'}: valid (1 exchange)" in out
    assert f"{tmp_path / 'sub' / 'chat.ndjson'}: valid (1 exchange)" in out
    assert not any(".hidden" in line for line in out)
    assert "4 files, 2 exchanges, 2 valid, 0 invalid, 2 not recordings" in proc.stderr
    # named on the command line, a file that is no recording is bad input (exit 2), the others still judged
    proc = _validate(tmp_path / "README.md", tmp_path / "pretty.json")
    assert proc.returncode == 2 and f"{tmp_path / 'pretty.json'}: valid (1 exchange)" in proc.stdout


def _shared_json_files() -> list[object]:
    from tests.conftest import recordings_dir

    root = recordings_dir()
    if not root.is_dir():
        return [pytest.param("", id="recordings-missing")]
    return [pytest.param(rel, id=rel) for rel in recording_files(root)
            if rel.endswith(".json") and rel not in EXPECTED_FAILURES and rel not in CLIENT_FILTERED]


@pytest.mark.parametrize("rel", _shared_json_files())
def test_shared_json_recordings_get_the_same_verdict_compact_and_pretty(rel: str, tmp_path: Path) -> None:
    """A pretty-printed copy (the most common fixture form) and a compact one, written here, judge as the original."""
    root = require_recordings()
    data = json.loads((root / rel).read_text(encoding="utf-8"))
    args: list[str | Path] = []
    version = RECORDED_VERSIONS.get(rel)
    if version:
        args += ["--ollama-version", version]
    original = _verdicts(_validate(*args, root / rel).stdout)
    for layout, text in (("pretty", json.dumps(data, indent=2)), ("compact", json.dumps(data, separators=(",", ":")))):
        copy = tmp_path / f"{layout}.json"
        copy.write_text(text)
        proc = _validate(*args, copy)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = [line.split(": ", 1)[1] for line in _verdicts(proc.stdout)]
        assert got == [line.split(": ", 1)[1] for line in original], (layout, proc.stdout)


def test_many_files_in_one_process_from_the_installed_command(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"r{i}.json").write_text(json.dumps(FINAL, indent=2))
    proc = _validate_subprocess(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "30 files, 30 exchanges, 30 valid, 0 invalid" in proc.stderr


def test_one_stream_item_and_sse_data_lines_without_framing(tmp_path: Path) -> None:
    item = tmp_path / "chunk.json"
    item.write_text(json.dumps(CHUNK, indent=2))
    proc = _validate(item)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "one stream item, judged as an item of a stream" in proc.stdout
    item.write_text(json.dumps({**CHUNK, "message": {"role": "assistant"}}, indent=2))  # content is never left out
    assert _validate(item).returncode == 1
    lines = tmp_path / "chat-chunks.txt"  # SSE data payloads one per line, as fixture files keep them
    lines.write_text(json.dumps(SSE_CHUNK) + "\n" + json.dumps(SSE_FINISH) + "\n")
    proc = _validate(lines)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _verdicts(proc.stdout) == [f"{lines}#0 POST /v1/chat/completions 200: valid"]
    assert "without the data: framing" in proc.stdout
    lines.write_text(json.dumps(SSE_CHUNK) + "\n" + json.dumps({**SSE_FINISH, "object": 1}) + "\n")
    assert _validate(lines).returncode == 1
