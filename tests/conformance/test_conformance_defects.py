"""The suite tests itself: every seeded defect of the broken target is caught by the test the table names.

The broken target is a proxy in front of the real reference backend (tests/conformance/broken_target.py), so a
defect is the only difference between a run that must pass (the control, defect `none`) and one that must not.
Each defect runs only the tests that should catch it, to stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broken_target import COMPATIBLE_ONLY, DEFECTS, DODGES, LEGAL_VARIANTS, BrokenTarget
from suite_runs import run_suite, statuses

pytestmark = pytest.mark.slow

# defect -> (catching test under conformance/suite, its compatible status, its exact status)
CATCHES: dict[str, tuple[str, str, str]] = {
    "ignore_num_predict": ("test_generate.py::test_num_predict_bounds_output[stream]", "fail", "fail"),
    "ignore_stop": ("test_generate.py::test_stop_sequence_ends_output", "fail", "fail"),
    "ignore_seed": ("test_generate.py::test_seed_is_reproducible", "fail", "fail"),
    "ignore_keep_alive": ("test_models.py::test_generate_load_then_unload", "fail", "fail"),
    "ignore_dimensions": ("test_embed.py::test_dimensions_truncates_and_renormalises", "fail", "fail"),
    "ignore_format": ("test_generate.py::test_format_schema_gives_an_instance", "fail", "fail"),
    "ignore_tools": ("test_chat.py::test_tool_call_shape", "fail", "fail"),
    "ignore_stream_false": ("test_generate.py::test_stream_false_is_one_json_object", "fail", "fail"),
    "sse_no_done": ("test_openai.py::test_chat_stream_grammar", "fail", "fail"),
    # openai-python types the delta's role Optional: a first delta without it is an exact-grade difference only
    "sse_no_role": ("test_openai.py::test_chat_stream_grammar", "pass", "fail"),
    "sse_two_finishes": ("test_openai.py::test_chat_stream_grammar", "fail", "fail"),
    "sse_changing_id": ("test_openai.py::test_chat_stream_grammar", "fail", "fail"),
    "messages_no_stop": ("test_anthropic.py::test_stream_event_order", "fail", "fail"),
    "anthropic_error_shape": ("test_anthropic.py::test_error_shape", "fail", "fail"),
    "embeddings_reordered": ("test_embed.py::test_batch_in_order", "fail", "fail"),
    "ndjson_missing_final": ("test_chat.py::test_stream_is_ndjson_by_default", "fail", "fail"),
    "ndjson_after_done": ("test_generate.py::test_stream_is_ndjson_by_default", "fail", "fail"),
    "ndjson_no_done_reason": ("test_generate.py::test_non_stream_has_reason_and_metrics", "fail", "fail"),
    "ndjson_as_json": ("test_generate.py::test_stream_is_ndjson_by_default", "fail", "fail"),
    "native_error_shape": ("test_errors.py::test_unknown_model[/api/chat]", "fail", "fail"),
    "openai_error_shape": ("test_openai.py::test_unknown_model[/v1/chat/completions]", "fail", "fail"),
    "server_error_on_bad_input": ("test_errors.py::test_malformed_json[/api/chat]", "fail", "fail"),
    "unnormalised_embeddings": ("test_embed.py::test_vectors_are_unit_length", "fail", "fail"),
    # ollama-python declares a tag's `digest` Optional: a tag without one is an exact-grade difference only
    "tags_without_digest": ("test_models.py::test_tags_lists_models", "pass", "fail"),
    "metrics_missing": ("test_chat.py::test_final_metrics", "fail", "fail"),
    "version_not_semver": ("test_server.py::test_version_is_semver", "fail", "fail"),
    # the target breaking off its answer is its failure, not the harness's: fail, naming the request
    "drop_connection": ("test_chat.py::test_stream_is_ndjson_by_default", "fail", "fail"),
    # a stream that goes silent: a clear failure after the idle timeout (half the per-test timeout), not an error
    "stall_mid_stream": ("test_generate.py::test_stream_is_ndjson_by_default", "fail", "fail"),
    # checks that do not take the server's word (issue 12)
    "eval_count_words": ("test_generate.py::test_num_predict_bounds_output[stream]", "fail", "fail"),
    "done_reason_lies": ("test_chat.py::test_num_predict_bounds_output[nonstream]", "fail", "fail"),
    "ps_always_empty": ("test_models.py::test_keep_alive_zero_unloads", "fail", "fail"),
    "buffered_stream": ("test_generate.py::test_stream_arrives_incrementally", "fail", "fail"),
    # differences official clients accept: pass the compatible grade, fail the exact one
    "finish_on_content_chunk": ("test_openai.py::test_chat_stream_grammar", "pass", "fail"),
    "content_null": ("test_openai.py::test_chat_stream_grammar", "pass", "fail"),
    "other_ids": ("test_anthropic.py::test_message_object", "pass", "fail"),
}
# What the catching test's message must say (the cause named, not just any failure).
MESSAGE_HAS: dict[str, str] = {"stall_mid_stream": "went silent", "buffered_stream": "buffered, not streamed",
                               "ps_always_empty": "/api/ps", "ignore_tools": "tool_calls",
                               "drop_connection": "the connection during POST /defect/drop_connection/api/chat"}
# Options a defect's run adds (a short per-test timeout makes the idle timeout 10 s).
EXTRA_ARGS: dict[str, tuple[str, ...]] = {"stall_mid_stream": ("--ollama-timeout", "20")}
# More tests a defect must get a given (compatible, exact) status in.
ALSO: list[tuple[str, str, str, str]] = [
    ("other_ids", "test_openai.py::test_chat_completion_object", "pass", "fail"),
    ("other_ids", "test_anthropic.py::test_stream_event_order", "pass", "fail"),
    ("buffered_stream", "test_openai.py::test_chat_stream_arrives_incrementally", "fail", "fail"),
    ("ps_always_empty", "test_models.py::test_generate_load_then_unload", "fail", "fail"),
    ("done_reason_lies", "test_generate.py::test_num_predict_bounds_output[stream]", "fail", "fail"),
]


def test_every_defect_has_a_catching_test() -> None:
    # legal variants and the issue-21 dodges have their own modules (test_conformance_legal_variants/_dodges.py)
    assert set(CATCHES) == set(DEFECTS) - {"none", *LEGAL_VARIANTS, *DODGES}
    assert all(CATCHES[d][1] == "pass" and CATCHES[d][2] == "fail" for d in COMPATIBLE_ONLY)


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


def test_control_passes(broken: BrokenTarget, tmp_path: Path) -> None:
    """Through the proxy without a defect, every catching test passes both grades: the defects are the only
    difference (the delivery checks included: the control streams answers through as they arrive)."""
    selection = sorted({test for test, _, _ in CATCHES.values()} | {test for _, test, _, _ in ALSO})
    _, results, output = run_suite(broken.url_for("none"), tmp_path, selection)
    found = statuses(results)
    not_passing = {t: (found.get(f"conformance/suite/{t}", {}).get("status", "missing"),
                       found.get(f"conformance/suite/{t}", {}).get("exact_message", ""))
                   for t in selection
                   if (found.get(f"conformance/suite/{t}", {}).get("status"), found.get(f"conformance/suite/{t}", {}).get("exact_status"))
                   != ("pass", "pass")}
    assert not not_passing, f"control run: {not_passing}\n{output[-3000:]}"


@pytest.mark.parametrize("defect", sorted(CATCHES))
def test_defect_is_caught(broken: BrokenTarget, tmp_path: Path, defect: str) -> None:
    expected = [(test, status, exact) for test, status, exact in [CATCHES[defect]]]
    expected += [(test, status, exact) for name, test, status, exact in ALSO if name == defect]
    code, results, output = run_suite(broken.url_for(defect), tmp_path, sorted({test for test, _, _ in expected}),
                                      *EXTRA_ARGS.get(defect, ()))
    found = statuses(results)
    for test, status, exact in expected:
        entry = found.get(f"conformance/suite/{test}")
        assert entry is not None, f"{test} did not run:\n{output[-3000:]}"
        got = (entry["status"], entry["exact_status"])
        assert got == (status, exact), (
            f"defect {defect}: {test} is {got} ({entry['message'] or entry['exact_message']}), expected {(status, exact)}"
        )
    if defect in MESSAGE_HAS:
        entry = found[f"conformance/suite/{CATCHES[defect][0]}"]
        assert MESSAGE_HAS[defect] in entry["message"], f"defect {defect}: message {entry['message']!r}"
    if CATCHES[defect][1] == "pass":
        assert code == 0, f"compatible-only differences must pass the default (compatible) gate:\n{output[-2000:]}"
    else:
        assert code != 0, "a run that caught a defect must exit non-zero"
