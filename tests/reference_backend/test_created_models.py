"""Created models behave as Ollama's: SYSTEM, TEMPLATE, PARAMETER and MESSAGE from /api/create are stored, shown
(the /api/show fields and a Modelfile in Ollama's order and quoting) and applied at generation — checked from
prompt_eval_count and eval_count, which the server cannot fake without rendering what it shows (real server,
real model, its own model store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

GEMMA = "gemma3:270m"
GREEDY = {"temperature": 0, "num_predict": 1}
SYSTEM = "You are terse. Answer with one word."


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    models: Path = tmp_path_factory.mktemp("created") / "models"
    with (
        ReferenceBackend(args=["--models", str(models)], quiet=True) as backend,
        httpx.Client(base_url=backend.url, timeout=600) as client,
    ):
        yield client


def create(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/api/create", json={"from": GEMMA, "stream": False, **body})
    assert (response.status_code, response.json()) == (200, {"status": "success"}), response.text


def generate(http: httpx.Client, model: str, **fields: Any) -> dict[str, Any]:
    body = {"model": model, "prompt": "Hi", "stream": False, "options": dict(GREEDY), **fields}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def chat(http: httpx.Client, model: str, messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "stream": False, "options": dict(GREEDY), **fields}
    response = http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


HI = [{"role": "user", "content": "Hi"}]


def test_created_system_is_shown_and_applied(http: httpx.Client) -> None:
    create(http, {"model": "terse", "system": SYSTEM})
    show = http.post("/api/show", json={"model": "terse"}).json()
    assert show["system"] == SYSTEM
    assert f"\nSYSTEM {SYSTEM}\n" in show["modelfile"]
    base_generate = generate(http, GEMMA)["prompt_eval_count"]
    base_chat = chat(http, GEMMA, HI)["prompt_eval_count"]
    assert generate(http, "terse")["prompt_eval_count"] > base_generate
    assert chat(http, "terse", HI)["prompt_eval_count"] > base_chat
    # a request's system replaces the model's: the count is the base model's with that system
    with_short = generate(http, GEMMA, system="Be kind.")["prompt_eval_count"]
    assert generate(http, "terse", system="Be kind.")["prompt_eval_count"] == with_short
    own_system = [{"role": "system", "content": "Be kind."}, *HI]
    assert chat(http, "terse", own_system)["prompt_eval_count"] == chat(http, GEMMA, own_system)["prompt_eval_count"]


def test_created_template_is_rendered(http: httpx.Client) -> None:
    create(http, {"model": "plain", "template": "{{ .Prompt }}"})
    show = http.post("/api/show", json={"model": "plain"}).json()
    assert show["template"] == "{{ .Prompt }}"
    raw = generate(http, GEMMA, prompt="Hello there", raw=True)["prompt_eval_count"]
    assert generate(http, "plain", prompt="Hello there")["prompt_eval_count"] == raw
    assert generate(http, GEMMA, prompt="Hello there")["prompt_eval_count"] > raw


def test_created_parameters_are_defaults_a_request_overrides(http: httpx.Client) -> None:
    create(http, {"model": "short", "parameters": {"num_predict": 2, "temperature": 0}})
    show = http.post("/api/show", json={"model": "short"}).json()
    assert "num_predict" in show["parameters"] and "PARAMETER num_predict 2\n" in show["modelfile"]
    body = {"model": "short", "prompt": "Count from one to twenty:", "stream": False}
    bounded = http.post("/api/generate", json=body).json()
    assert bounded["eval_count"] == 2 and bounded["done_reason"] == "length"
    longer = http.post("/api/generate", json={**body, "options": {"num_predict": 5}}).json()
    assert longer["eval_count"] == 5


def test_created_messages_are_shown_and_prepended(http: httpx.Client) -> None:
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    create(http, {"model": "remembers", "messages": history})
    show = http.post("/api/show", json={"model": "remembers"}).json()
    assert show["messages"] == history
    assert "\nMESSAGE user My name is Ada.\nMESSAGE assistant Hello Ada.\n" in show["modelfile"]
    assert chat(http, "remembers", HI)["prompt_eval_count"] > chat(http, GEMMA, HI)["prompt_eval_count"]
    expected = chat(http, GEMMA, [*history, *HI])["prompt_eval_count"]
    assert chat(http, "remembers", HI)["prompt_eval_count"] == expected
    # generate prepends the history too, unless the request carries a context
    assert generate(http, "remembers")["prompt_eval_count"] > generate(http, GEMMA)["prompt_eval_count"]


def test_modelfile_order_and_quoting(http: httpx.Client) -> None:
    create(http, {
        "model": "everything", "template": "{{ .System }}\n{{ .Prompt }}", "system": "Line one\nline two",
        "parameters": {"stop": ["<end>", "two words"]}, "license": ["MIT", "said \"x\"\nmore"],
        "messages": [{"role": "user", "content": " padded "}],
    })  # fmt: skip
    show = http.post("/api/show", json={"model": "everything"}).json()
    lines = show["modelfile"].split("\n")
    kinds = [line.split(" ")[0] for line in lines if line and not line.startswith("#")]
    firsts = [kinds.index(k) for k in ("FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "MESSAGE")]
    assert firsts == sorted(firsts), kinds
    text = show["modelfile"]
    assert 'TEMPLATE "{{ .System }}\n{{ .Prompt }}"' in text
    assert 'SYSTEM "Line one\nline two"' in text
    assert "PARAMETER stop <end>\nPARAMETER stop two words\n" in text
    assert 'LICENSE MIT\nLICENSE """said "x"\nmore"""\n' in text
    assert 'MESSAGE user " padded "\n' in text
    assert show["license"].endswith('\nMIT\nsaid "x"\nmore'), "license layers add to the base model's"


def test_bad_templates_are_refused_with_gos_error(http: httpx.Client) -> None:
    refused = http.post("/api/create", json={"model": "bad", "from": GEMMA, "template": "{{ if .System }}x"})
    assert (refused.status_code, refused.json()) == (400, {"error": "template error: template: :1: unexpected EOF"})
    undefined = http.post("/api/create", json={"model": "bad", "from": GEMMA, "template": "{{ nope .Prompt }}"})
    assert undefined.json() == {"error": 'template error: template: :1: function "nope" not defined'}
    request = http.post("/api/generate", json={"model": GEMMA, "prompt": "x", "template": "{{ end }}", "stream": False})
    assert (request.status_code, request.json()) == (500, {"error": "template: :1: unexpected {{end}}"})


def test_request_fields_as_ollama_treats_them(http: httpx.Client) -> None:
    create(http, {"model": "terse", "system": SYSTEM})
    create(http, {"model": "remembers", "messages": [{"role": "user", "content": "My name is Ada."}]})
    raw_with_system = http.post("/api/generate", json={"model": GEMMA, "prompt": "x", "raw": True, "system": "s"})
    assert raw_with_system.status_code == 400
    rendered = http.post(
        "/api/generate",
        json={"model": "terse", "prompt": "P", "template": "[{{ .System }}|{{ .Prompt }}]", "_debug_render_only": True},
    ).json()["_debug_info"]["rendered_template"]
    assert rendered == f"[{SYSTEM}|P]", "a request's template is rendered with the model's system"
    first = generate(http, GEMMA, prompt="One")
    follow = generate(http, "remembers", prompt="Two", context=first["context"])
    plain_follow = generate(http, GEMMA, prompt="Two", context=first["context"])
    assert follow["prompt_eval_count"] == plain_follow["prompt_eval_count"], "no MESSAGE history with a context"


def test_adapters_stay_refused(http: httpx.Client) -> None:
    data = b"not an adapter"
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    refused = http.post("/api/create", json={"model": "lora", "from": GEMMA, "adapters": {"a.gguf": digest}})
    lines = [json.loads(line) for line in refused.text.splitlines()] if refused.status_code == 200 else [refused.json()]
    assert "error" in lines[-1]


def test_created_models_are_deleted(http: httpx.Client) -> None:
    for name in ("terse", "plain", "short", "remembers", "everything"):
        http.request("DELETE", "/api/delete", json={"model": name})
    names = {m["name"] for m in http.get("/api/tags").json()["models"]}
    assert not names & {"terse:latest", "plain:latest", "short:latest", "remembers:latest", "everything:latest"}
