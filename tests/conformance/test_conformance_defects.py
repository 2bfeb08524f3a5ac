"""The suite tests itself: every seeded defect of the broken target is caught by the test the table names.

The broken target is a proxy in front of the real reference backend (tests/conformance/broken_target.py), so a
defect is the only difference between a run that must pass (the control, defect `none`) and one that must not.
Each defect runs only the tests that should catch it, to stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broken_target import DEFECTS, BrokenTarget
from suite_runs import run_suite, statuses

pytestmark = pytest.mark.slow

# defect -> (catching test under conformance/suite, the status it must get)
CATCHES: dict[str, tuple[str, str]] = {
    "ignore_num_predict": ("test_generate.py::test_num_predict_bounds_output[stream]", "fail"),
    "ignore_stop": ("test_generate.py::test_stop_sequence_ends_output", "fail"),
    "ignore_seed": ("test_generate.py::test_seed_is_reproducible", "fail"),
    "ignore_keep_alive": ("test_models.py::test_generate_load_then_unload", "fail"),
    "ignore_dimensions": ("test_embed.py::test_dimensions_truncates_and_renormalises", "fail"),
    "ignore_format": ("test_generate.py::test_format_schema_gives_an_instance", "fail"),
    "sse_no_done": ("test_openai.py::test_chat_stream_grammar", "fail"),
    "sse_no_role": ("test_openai.py::test_chat_stream_grammar", "fail"),
    "sse_two_finishes": ("test_openai.py::test_chat_stream_grammar", "fail"),
    "sse_changing_id": ("test_openai.py::test_chat_stream_grammar", "fail"),
    "messages_no_stop": ("test_anthropic.py::test_stream_event_order", "fail"),
    "anthropic_error_shape": ("test_anthropic.py::test_error_shape", "fail"),
    "embeddings_reordered": ("test_embed.py::test_batch_in_order", "fail"),
    "ndjson_missing_final": ("test_chat.py::test_stream_is_ndjson_by_default", "fail"),
    "ndjson_after_done": ("test_generate.py::test_stream_is_ndjson_by_default", "fail"),
    "ndjson_no_done_reason": ("test_generate.py::test_non_stream_has_reason_and_metrics", "fail"),
    "ndjson_as_json": ("test_generate.py::test_stream_is_ndjson_by_default", "fail"),
    "native_error_shape": ("test_errors.py::test_unknown_model[/api/chat]", "fail"),
    "openai_error_shape": ("test_openai.py::test_unknown_model[/v1/chat/completions]", "fail"),
    "server_error_on_bad_input": ("test_errors.py::test_malformed_json[/api/chat]", "fail"),
    "unnormalised_embeddings": ("test_embed.py::test_vectors_are_unit_length", "fail"),
    "tags_without_digest": ("test_models.py::test_tags_lists_models", "fail"),
    "metrics_missing": ("test_chat.py::test_final_metrics", "fail"),
    "version_not_semver": ("test_server.py::test_version_is_semver", "fail"),
    "drop_connection": ("test_chat.py::test_stream_is_ndjson_by_default", "error"),
}


def test_every_defect_has_a_catching_test() -> None:
    assert set(CATCHES) == set(DEFECTS) - {"none"}


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


def test_control_passes(broken: BrokenTarget, tmp_path: Path) -> None:
    """Through the proxy without a defect, every catching test passes: the defects are the only difference."""
    selection = sorted({test for test, _ in CATCHES.values()})
    _, results, output = run_suite(broken.url_for("none"), tmp_path, selection)
    found = statuses(results)
    not_passing = {t: found.get(f"conformance/suite/{t}", {}).get("message", "missing") for t in selection
                   if found.get(f"conformance/suite/{t}", {}).get("status") != "pass"}
    assert not not_passing, f"control run: {not_passing}\n{output[-3000:]}"


@pytest.mark.parametrize("defect", sorted(CATCHES))
def test_defect_is_caught(broken: BrokenTarget, tmp_path: Path, defect: str) -> None:
    test, expected = CATCHES[defect]
    code, results, output = run_suite(broken.url_for(defect), tmp_path, [test])
    entry = statuses(results).get(f"conformance/suite/{test}")
    assert entry is not None, f"{test} did not run:\n{output[-3000:]}"
    assert entry["status"] == expected, f"defect {defect}: {test} is {entry['status']} ({entry['message']}), expected {expected}"
    assert code != 0, "a run that caught a defect must exit non-zero"
