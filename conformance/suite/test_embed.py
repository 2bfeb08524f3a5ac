"""POST /api/embed (batched, L2-normalised) and the legacy POST /api/embeddings."""

from __future__ import annotations

import math

import pytest

from ollama_conformance.conformance.checks import Api


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.feature("embed.basic")
def test_single_input(api: Api, embed_model: str) -> None:
    got = api.post("/api/embed", {"model": embed_model, "input": "The sky is blue."})
    (body,) = api.contract("POST", "/api/embed", got)
    assert got.status == 200, f"status {got.status}"
    embeddings = body["embeddings"]
    assert len(embeddings) == 1 and len(embeddings[0]) > 0, f"{len(embeddings)} embeddings for one input"
    assert all(isinstance(x, (int, float)) for x in embeddings[0]), "embedding values are numbers"


@pytest.mark.feature("embed.batch")
def test_batch_in_order(api: Api, embed_model: str) -> None:
    texts = ["one", "two two", "three three three"]
    batch = api.single(api.post("/api/embed", {"model": embed_model, "input": texts}))["embeddings"]
    assert len(batch) == len(texts), f"{len(batch)} embeddings for {len(texts)} inputs"
    single = api.single(api.post("/api/embed", {"model": embed_model, "input": texts[2]}))["embeddings"][0]
    cosine = sum(a * b for a, b in zip(batch[2], single, strict=True)) / (norm(batch[2]) * norm(single))
    assert cosine > 0.99, f"batch item 2 differs from the same input alone (cosine {cosine:.4f}): order not kept?"


@pytest.mark.feature("embed.normalized")
def test_vectors_are_unit_length(api: Api, embed_model: str) -> None:
    body = api.single(api.post("/api/embed", {"model": embed_model, "input": ["a short text", "another one"]}))
    for vector in body["embeddings"]:
        assert abs(norm(vector) - 1.0) < 1e-3, f"L2 norm {norm(vector):.5f}, expected 1"


@pytest.mark.feature("embed.basic")
def test_related_texts_are_closer(api: Api, embed_model: str) -> None:
    # Unit length alone is easy to fake; a real embedding puts a paraphrase nearer than an unrelated sentence.
    texts = ["The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly tax revenue rose by four percent."]
    vectors = api.single(api.post("/api/embed", {"model": embed_model, "input": texts}))["embeddings"]
    assert len(vectors) == 3, f"{len(vectors)} embeddings for 3 inputs"

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))

    related, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert related > unrelated, (
        f"a paraphrase is no closer than an unrelated text (cosine {related:.3f} vs {unrelated:.3f}): "
        "the vectors do not embed the input"
    )


@pytest.mark.feature("embed.dimensions")
def test_dimensions_truncates_and_renormalises(api: Api, embed_model: str) -> None:
    body = api.single(api.post("/api/embed", {"model": embed_model, "input": "dimensions", "dimensions": 16}))
    vector = body["embeddings"][0]
    assert len(vector) == 16, f"dimensions 16 gave {len(vector)} values"
    assert abs(norm(vector) - 1.0) < 1e-3, f"L2 norm after truncation {norm(vector):.5f}, expected 1"


@pytest.mark.feature("embed.truncate")
def test_truncate_false_refuses_long_input(api: Api, embed_model: str) -> None:
    long_text = "word " * 2000
    ok = api.post("/api/embed", {"model": embed_model, "input": long_text, "options": {"num_ctx": 64}})
    assert ok.status == 200, f"over-long input with default truncate answered {ok.status}: {ok.text[:160]!r}"
    refused = api.post("/api/embed", {"model": embed_model, "input": long_text, "truncate": False, "options": {"num_ctx": 64}})
    message = api.native_error(refused, 400)
    assert "context length" in message, f"message {message!r}"


@pytest.mark.feature("embed.metrics")
def test_metrics(api: Api, embed_model: str) -> None:
    body = api.single(api.post("/api/embed", {"model": embed_model, "input": ["a", "b"]}))
    for key in ("total_duration", "load_duration", "prompt_eval_count"):
        assert isinstance(body.get(key), int) and body[key] >= 0, f"{key} is {body.get(key)!r}"
    assert body["prompt_eval_count"] >= 2, "prompt_eval_count sums the tokens of every input"


@pytest.mark.feature("embed.input_type")
def test_bad_input_type(api: Api, embed_model: str) -> None:
    message = api.native_error(api.post("/api/embed", {"model": embed_model, "input": 42}), 400)
    assert "invalid input type" in message, f"message {message!r}"


@pytest.mark.feature("embed.empty_input")
def test_empty_input_loads(api: Api, embed_model: str) -> None:
    body = api.single(api.post("/api/embed", {"model": embed_model, "input": []}))
    assert body.get("embeddings") == [], f"embeddings {body.get('embeddings')!r}, expected []"


@pytest.mark.feature("embeddings.legacy")
def test_legacy_endpoint(api: Api, embed_model: str) -> None:
    got = api.post("/api/embeddings", {"model": embed_model, "prompt": "The sky is blue."})
    (body,) = api.contract("POST", "/api/embeddings", got)
    assert got.status == 200, f"status {got.status}"
    assert isinstance(body.get("embedding"), list) and body["embedding"], "no `embedding` list"
