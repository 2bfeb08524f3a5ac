"""Pure functions of the reference backend: durations, names, options, wire encoding, templates, tool calls."""

from __future__ import annotations

import math

import pytest

from ollama_conformance.reference_backend.api.errors import ApiError, RequestError
from ollama_conformance.reference_backend.api.prompts import TemplateError, render
from ollama_conformance.reference_backend.api.sse import writer_json_response
from ollama_conformance.reference_backend.api.wire import (
    BodyError,
    canonical_keys,
    decode_body,
    decode_struct,
    go_json,
    json_response,
    rfc3339_nano,
)
from ollama_conformance.reference_backend.durations import (
    DurationError,
    parse_env_keep_alive,
    parse_go_duration,
    parse_keep_alive,
)
from ollama_conformance.reference_backend.engine.options import OptionError, Options
from ollama_conformance.reference_backend.engine.toolcalls import ToolCallParser
from ollama_conformance.reference_backend.store import bundled
from ollama_conformance.reference_backend.store.names import parse_name


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("0", 0.0), ("1.5s", 1.5), ("300ms", 0.3), ("-1s", -1.0), ("2h", 7200.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'time: invalid duration "abc"'),
        ("10", 'time: missing unit in duration "10"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("", 'time: invalid duration ""'),
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_go_duration(text)
    assert str(info.value) == message


def test_keep_alive_values() -> None:
    assert parse_keep_alive(None) is None
    assert parse_keep_alive(0) == 0
    assert parse_keep_alive(2.5) == 2.5
    assert parse_keep_alive(-1) == math.inf
    assert parse_keep_alive("-5m") == math.inf
    assert parse_keep_alive("10m") == 600
    with pytest.raises(DurationError, match="Unsupported type: 'bool'"):
        parse_keep_alive(True)
    assert parse_env_keep_alive("30") == 30
    assert parse_env_keep_alive("-1") == math.inf


def test_model_names() -> None:
    name = parse_name("gemma3:270m")
    assert name is not None and name.display == "gemma3:270m" and name.full == "registry.ollama.ai/library/gemma3:270m"
    bare = parse_name("gemma3")
    assert bare is not None and bare.display == "gemma3:latest"
    namespaced = parse_name("me/model:v1")
    assert namespaced is not None and namespaced.display == "me/model:v1"
    hosted = parse_name("example.com:5000/me/model:v1")
    assert hosted is not None and hosted.host == "example.com:5000"
    for bad in ["", "bad name", "a/b/c/d", "-x", "x:", ":tag", " x"]:
        assert parse_name(bad) is None, bad


def test_options_types_and_defaults() -> None:
    options = Options()
    assert (options.temperature, options.top_k, options.top_p, options.num_predict, options.seed) == (
        0.8,
        40,
        0.9,
        -1,
        -1,
    )
    options.apply({"temperature": 0, "num_predict": 7.9, "stop": ["x"], "unknown": 1, "top_k": None})
    assert options.temperature == 0.0 and options.num_predict == 7 and options.stop == ["x"] and options.top_k == 40
    for key, value, message in [
        ("temperature", "hot", 'option "temperature" must be of type float32'),
        ("num_predict", "3", 'option "num_predict" must be of type integer'),
        ("stop", "x", 'option "stop" must be of type array'),
        ("stop", [1], 'option "stop" must be of an array of strings'),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
    ]:
        with pytest.raises(OptionError) as info:
            Options().apply({key: value})
        assert str(info.value) == message


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<b>&"}) == '{"a":"\\u003cb\\u003e\\u0026"}'
    assert go_json({"x": "é"}) == '{"x":"é"}'
    assert go_json({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'  # a Go map: keys sorted
    with pytest.raises(ValueError):  # Go's encoder refuses NaN and the infinities
        go_json({"x": float("nan")})


def test_one_json_response_for_gin_and_the_v1_writers() -> None:
    gin = json_response({"a": "<"}, 404)
    assert (gin.status_code, gin.body, gin.headers["content-type"]) == (
        404,
        b'{"a":"\\u003c"}',
        "application/json; charset=utf-8",
    )
    writer = writer_json_response({"a": 1})
    assert (writer.body, writer.headers["content-type"]) == (b'{"a":1}\n', "application/json")


def test_one_go_struct_binder_for_core_and_surfaces() -> None:
    fields = {"model": "string", "num": "int", "temp": "float64", "opts": "*api.Options"}
    assert decode_struct({"MODEL": "m", "num": 3, "temp": 1, "x": 1, "opts": None}, "api.R", fields) == {
        "model": "m",
        "num": 3,
        "temp": 1,
    }
    for value, shown in [("3", "string"), (1.5, "number 1.5"), (4.0, "number 4.0"), (True, "bool")]:
        with pytest.raises(RequestError) as info:
            decode_struct({"num": value}, "api.R", fields)
        assert info.value.message == f"json: cannot unmarshal {shown} into Go struct field R.num of type int"
        assert isinstance(info.value, ApiError) and info.value.status == 400
    with pytest.raises(
        RequestError, match=r"^json: cannot unmarshal number into Go struct field R.model of type string$"
    ):
        decode_struct({"model": 5}, "api.R", fields)
    with pytest.raises(RequestError, match=r"of type api.Options$"):  # a pointer field names the pointed-to type
        decode_struct({"opts": []}, "api.R", fields)
    with pytest.raises(RequestError, match=r"^json: cannot unmarshal array into Go value of type api.R$"):
        decode_struct([], "api.R", fields)


def test_timestamps_are_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_000) == "2023-11-14T22:13:20.123456Z"
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_body_decoding_errors() -> None:
    for raw, message in [
        (b"", "missing request body"),
        (b"{", "unexpected EOF"),
        (b"x", "invalid character 'x' looking for beginning of value"),
    ]:
        with pytest.raises(BodyError) as info:
            decode_body(raw)
        assert str(info.value) == message
    assert decode_body(b"null") == {}


def test_keys_match_case_insensitively() -> None:
    assert canonical_keys({"Model": "a", "PROMPT": "b", "other": 1, "_hint": 2}, ("model", "prompt")) == {
        "model": "a",
        "prompt": "b",
        "_hint": 2,
    }


def test_gemma_chat_template() -> None:
    gemma = bundled.template_text("gemma3.gotmpl")
    text = render(gemma, [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])
    assert text == "<start_of_turn>user\nS<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    continued = render(gemma, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}])
    assert continued.endswith("<start_of_turn>model\nHel")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert '"name": "f"' in render(gemma, [{"role": "user", "content": "x"}], tools)


def test_go_template_legacy_values() -> None:
    template = "{{ if .System }}S:{{ .System }} {{ end }}P:{{ .Prompt }}{{- /* c */ -}}  !"
    system_user = [{"role": "system", "content": "sys"}, {"role": "user", "content": "p"}]
    assert render(template, system_user) == "S:sys P:p!"
    assert render(template, [{"role": "user", "content": "p"}]) == "P:p!"
    with pytest.raises(TemplateError, match="unexpected EOF"):
        render("{{ if .System }}x", [])


def test_tool_call_parser() -> None:
    parser = ToolCallParser([{"type": "function", "function": {"name": "get_weather"}}])
    content, calls = parser.feed('Sure. {"name": "get_wea')
    assert content == "Sure. " and calls == []
    content, calls = parser.feed('ther", "arguments": {"city": "Paris"}} done')
    assert content == " done"
    assert len(calls) == 1
    call = calls[0]
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    content, calls = parser.feed('{"not": "a call"}')
    assert content == '{"not": "a call"}' and calls == []
