"""Differential mode (conformance/differential.py): structure compared, values ignored.

The unit tests feed it answers written here; the slow ones run it for real: the bundled backend against itself
(no difference), and the seeded-defect proxy (tests/conformance/broken_target.py) against the backend behind it,
where each structural defect must show at exactly the probes it touches, and a value-level defect not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from broken_target import BrokenTarget

from ollama_conformance.cli import main
from ollama_conformance.conformance import differential as diff

# --- units -----------------------------------------------------------------------------------------------------


def _compare(base: object, cand: object, json_content: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    return diff.compare_shapes(diff.shape(base, json_content=json_content), diff.shape(cand, json_content=json_content), "")


def test_values_are_ignored_structure_is_not() -> None:
    base = {"model": "a", "created_at": "2026-01-01T00:00:00Z", "response": "hello", "eval_count": 3, "context": [1, 2]}
    same = {"model": "b", "created_at": "2027-05-05T10:10:10.5Z", "response": "other text", "eval_count": 9, "context": []}
    assert _compare(base, same) == []
    assert _compare(base, {**base, "eval_count": None}) == [("field eval_count", "number", "null")]
    assert _compare(base, {k: v for k, v in base.items() if k != "eval_count"}) == [("field eval_count", "number", "absent")]
    assert _compare(base, {**base, "eval_count": "3"}) == [("field eval_count", "number", "string")]


def test_formats_tags_and_vectors_are_structure() -> None:
    assert _compare({"version": "0.33.0"}, {"version": "latest"}) == [("field version", "semver, string", "not-semver, string")]
    assert _compare({"object": "chat.completion"}, {"object": "text_completion"})
    assert _compare({"embeddings": [[0.1] * 4]}, {"embeddings": [[0.2] * 4]}) == []
    assert _compare({"embeddings": [[0.1] * 4]}, {"embeddings": [[0.1] * 8]})


def test_a_replaced_container_is_one_difference() -> None:
    base = {"error": {"message": "m", "type": "t", "param": None}}
    assert _compare(base, {"error": "m"}) == [("field error", "object", "string")]


def test_structured_output_shape() -> None:
    base = {"message": {"content": '{"answer": true}'}}
    assert _compare(base, {"message": {"content": '{"answer": false}'}}, ("message.content",)) == []
    assert _compare(base, {"message": {"content": "Sure! Here"}}, ("message.content",)) == [
        ("field message.content", "string", "not JSON, string")
    ]


def test_stream_order_and_constants() -> None:
    chunk = 'data: {"id":"x","choices":[{"delta":{"content":"a"},"finish_reason":null}]}'
    finish = 'data: {"id":"x","choices":[{"delta":{},"finish_reason":"stop"}]}'
    events = diff.parse_events("text/event-stream", "\n\n".join([chunk, chunk, chunk, finish, "data: [DONE]"]) + "\n\n")
    assert diff.sequence(events) == ["delta+", "finish", "[DONE]"]
    twice = diff.parse_events("text/event-stream", "\n\n".join([chunk, finish, finish, "data: [DONE]"]) + "\n\n")
    assert diff.sequence(twice) == ["delta+", "finish", "finish", "[DONE]"]
    assert diff.stream_constants(events) == {"id": "constant"}
    varying = diff.parse_events("text/event-stream", "\n\n".join([chunk, finish.replace('"x"', '"y"')]) + "\n\n")
    assert diff.stream_constants(varying) == {"id": "varies"}


def test_bad_usage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", "http://127.0.0.1:9"]) == 2
    assert main(["check", "--target", "not a url", "--baseline", "http://127.0.0.1:9"]) == 2
    assert main(["check", "--target", "http://127.0.0.1:9", "--baseline", "http://127.0.0.1:9"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 3


# --- for real --------------------------------------------------------------------------------------------------

# defect -> the probes (surface, probe name) where it must show; an empty set: a value-level defect, not structural.
SHOWS: dict[str, set[tuple[str, str]]] = {
    "native_error_shape": {("native", "chat unknown model"), ("native", "chat malformed JSON"), ("native", "generate without model")},
    # the proxy rewrites every /v1/ error, /v1/messages included
    "openai_error_shape": {("openai", "chat completion unknown model"), ("openai", "chat completion malformed JSON"),
                           ("anthropic", "message unknown model")},
    "anthropic_error_shape": {("anthropic", "message unknown model")},
    "sse_no_done": {("openai", "chat completion stream")},
    "sse_no_role": {("openai", "chat completion stream")},
    "sse_two_finishes": {("openai", "chat completion stream")},
    "sse_changing_id": {("openai", "chat completion stream")},
    "messages_no_stop": {("anthropic", "message stream")},
    "ndjson_missing_final": {("native", "generate stream"), ("native", "chat stream")},
    "ndjson_after_done": {("native", "generate stream"), ("native", "chat stream")},
    "ndjson_as_json": {("native", "generate stream"), ("native", "chat stream")},
    "metrics_missing": {("native", "generate stream"), ("native", "chat stream")},
    "ndjson_no_done_reason": {("native", "generate"), ("native", "generate stream"), ("native", "chat"),
                              ("native", "chat stream"), ("native", "chat format")},
    "server_error_on_bad_input": {("native", "chat malformed JSON"), ("openai", "chat completion malformed JSON")},
    "tags_without_digest": {("native", "tags")},
    "version_not_semver": {("native", "version")},
    "ignore_dimensions": {("native", "embed dimensions")},
    "ignore_format": {("native", "chat format")},
    "drop_connection": {("native", "generate stream"), ("native", "chat stream"), ("openai", "chat completion stream"),
                        ("anthropic", "message stream")},
    # a silent stall: the read times out (transport ReadTimeout) where the baseline answered
    "stall_mid_stream": {("native", "generate stream"), ("native", "chat stream"), ("openai", "chat completion stream"),
                         ("anthropic", "message stream")},
    "ignore_stream_false": {("native", "generate"), ("native", "chat"), ("native", "chat format")},
    "finish_on_content_chunk": {("openai", "chat completion stream")},
    "content_null": {("openai", "chat completion stream")},
    # ids are ignored; Anthropic's `stop_sequence: null` where Ollama has none is structure (null vs absent)
    "other_ids": {("anthropic", "message"), ("anthropic", "message stream")},
    # value-level, timing or not probed: the suite's job, invisible to a structural comparison (and no noise)
    "eval_count_words": set(),
    "done_reason_lies": set(),
    "ps_always_empty": set(),
    "buffered_stream": set(),
    "ignore_tools": set(),
    "ignore_num_predict": set(),
    "ignore_stop": set(),
    "ignore_seed": set(),
    "ignore_keep_alive": set(),
    "embeddings_reordered": set(),
    "unnormalised_embeddings": set(),
}


# Per-read timeout of the candidate's requests: a stall is only seen when the read gives up (default 120 s).
READ_TIMEOUT_S = {"stall_mid_stream": 60.0}


def test_every_seeded_defect_is_classified() -> None:
    """A defect added to the proxy must be placed here: where it shows, or why it cannot (value-level)."""
    from broken_target import DEFECTS, DODGES, LEGAL_VARIANTS

    # the legal variants and issue 21's dodges are judged by the suite in their own modules
    # (test_conformance_legal_variants.py, test_conformance_dodges.py), not by the differential
    assert set(SHOWS) == set(DEFECTS) - {"none", *LEGAL_VARIANTS, *DODGES}


@pytest.fixture(scope="module")
def models(warm_reference_url: str) -> tuple[str, str | None]:
    import httpx

    with httpx.Client(base_url=warm_reference_url, timeout=60) as client:
        model, embed = diff.discover_models(client)
    assert model is not None
    return model, embed


@pytest.fixture(scope="module")
def baseline(warm_reference_url: str, models: tuple[str, str | None]) -> tuple[list[diff.Probe], list[diff.Observed]]:
    """The backend's answers to every probe, observed once for all the defects."""
    selected = diff.select_probes(*models)
    return selected, diff.observe_all(warm_reference_url, selected)


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.slow
def test_backend_against_itself_differs_nowhere(warm_reference_url: str, models: tuple[str, str | None],
                                                baseline: tuple[list[diff.Probe], list[diff.Observed]]) -> None:
    selected, base = baseline
    again = diff.observe_all(warm_reference_url, selected)
    result = diff.diff_observed(warm_reference_url, warm_reference_url, *models, selected, base, again)
    assert [d.line() for d in result.differences] == []
    assert {p["surface"] for p in result.probes} == {"native", "openai", "anthropic"}


# Each defect re-sends every probe (20-60 s each; the stall waits out its read timeout), so the default run takes one
# defect of each kind (error shapes of each surface, each stream grammar, a model listing, a dropped connection,
# ids, and value-level ones that must show nothing); OLLAMA_CONFORMANCE_DIFF_ALL=1 runs all of SHOWS.
SAMPLED = ("native_error_shape", "openai_error_shape", "anthropic_error_shape", "sse_two_finishes", "messages_no_stop",
           "ndjson_after_done", "ndjson_no_done_reason", "tags_without_digest", "ignore_stream_false",
           "drop_connection", "other_ids", "eval_count_words", "ignore_seed")
DEFECTS_RUN = sorted(SHOWS) if os.environ.get("OLLAMA_CONFORMANCE_DIFF_ALL") == "1" else list(SAMPLED)


def test_the_sample_is_of_known_defects() -> None:
    assert set(SAMPLED) <= set(SHOWS)
    assert any(SHOWS[d] for d in SAMPLED) and any(not SHOWS[d] for d in SAMPLED)


@pytest.mark.slow
@pytest.mark.parametrize("defect", DEFECTS_RUN)
def test_seeded_defect_shows_where_it_is_and_nowhere_else(broken: BrokenTarget, models: tuple[str, str | None],
                                                          baseline: tuple[list[diff.Probe], list[diff.Observed]], defect: str) -> None:
    selected, base = baseline
    cand = diff.observe_all(broken.url_for(defect), selected, timeout_s=READ_TIMEOUT_S.get(defect, 120.0))
    result = diff.diff_observed(broken.url_for(defect), "reference", *models, selected, base, cand)
    where = {(d.surface, d.probe) for d in result.differences}
    assert where == SHOWS[defect], "\n".join(d.line() for d in result.differences)
