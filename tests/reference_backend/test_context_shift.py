"""Context shift and prompt truncation as Ollama's runner does them, on a server started with
OLLAMA_CONTEXT_LENGTH=512 (its slot table starts at 256 positions and grows with use): generations many times
longer than the context complete (each shift keeps num_keep tokens and halves the rest), over-long prompts are
truncated to fit, and truncate/shift false refuse them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollama_conformance.reference_backend.api.tokens import truncate_prompt

GEMMA = "gemma3:270m"
CONTEXT = 512
COUNTING = ", ".join(str(n) for n in range(1, 40)) + ","
TOO_LONG = "Tell me a story. " + " ".join(f"word{n}" for n in range(2000))


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from ollama_conformance.reference_backend.launcher import ReferenceBackend

    models: Path = tmp_path_factory.mktemp("shift") / "models"
    env = {"OLLAMA_CONTEXT_LENGTH": str(CONTEXT)}
    with (
        ReferenceBackend(args=["--models", str(models)], env=env, quiet=True) as backend,
        httpx.Client(base_url=backend.url, timeout=900) as client,
    ):
        yield client


def generate(http: httpx.Client, **fields: object) -> httpx.Response:
    return http.post("/api/generate", json={"model": GEMMA, "stream": False, **fields})


def grow_the_slot_table(http: httpx.Client) -> None:
    """A generation that passes the table's first 256 positions grows it during a decode step (in inference
    mode): a later shift must still be able to update it in place."""
    grown = generate(http, prompt=COUNTING, raw=True, options={"temperature": 0, "num_predict": 300})
    assert grown.status_code == 200 and grown.json()["eval_count"] == 300, grown.text


@pytest.mark.parametrize("num_ctx", [256, 128])
def test_generation_many_times_the_context_completes(http: httpx.Client, num_ctx: int) -> None:
    grow_the_slot_table(http)
    num_predict = 2 * num_ctx  # several shifts: the old shift kept more each time until nothing could go
    answer = generate(http, prompt=COUNTING, raw=True, options={"temperature": 0, "num_predict": num_predict,
                                                                 "num_ctx": num_ctx})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "error" not in body
    assert (body["done_reason"], body["eval_count"]) == ("length", num_predict)


def test_streamed_generation_without_num_predict_reaches_a_shift(http: httpx.Client) -> None:
    """The issue's case: no num_predict; the stream must go past the context without an engine error."""
    seen = 0
    with http.stream("POST", "/api/generate", json={"model": GEMMA, "prompt": COUNTING, "raw": True,
                                                    "options": {"temperature": 0, "num_ctx": 128}}) as response:  # fmt: skip
        assert response.status_code == 200
        for line in response.iter_lines():
            assert '"error"' not in line, line
            seen += 1
            if seen > 2 * 128:
                break
    assert seen > 2 * 128


def test_over_long_prompt_is_truncated(http: httpx.Client) -> None:
    answer = generate(http, prompt=TOO_LONG, options={"temperature": 0, "num_predict": 4})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prompt_eval_count"] < CONTEXT and body["eval_count"] == 4
    chat = http.post("/api/chat", json={"model": GEMMA, "stream": False, "options": {"num_predict": 4},
                                        "messages": [{"role": "user", "content": TOO_LONG}]})  # fmt: skip
    assert chat.status_code == 200 and chat.json()["prompt_eval_count"] < CONTEXT


@pytest.mark.parametrize("flag", ["truncate", "shift"])
def test_over_long_prompt_refused_without_truncation(http: httpx.Client, flag: str) -> None:
    answer = generate(http, prompt=TOO_LONG, **{flag: False})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("the prompt is longer than the context length")


def test_truncation_arithmetic_matches_ollama() -> None:
    """llama_server.go: keep num_keep + BOS, then the tail, limit = num_ctx - max((num_ctx - keep) / 2, 1)."""
    tokens = list(range(1000))
    kept = truncate_prompt(tokens, 4, True, 256)
    assert kept[:5] == [0, 1, 2, 3, 4] and kept[5:] == tokens[1000 - (len(kept) - 5) :]
    assert len(kept) == 256 - (256 - 5) // 2
    assert truncate_prompt(tokens, -1, True, 256) == tokens[:255], "a negative num_keep keeps the head"
