"""Legal variants (issue 21): answers that differ from Ollama's only in ways the SSE spec, HTTP and the official
clients' own types allow pass the compatible grade, and the exact grade names each wire difference.

Each variant is a rewrite of the real reference backend's answers by the broken target (broken_target.py), so
the variant is the only difference from a faithful server; each runs only the tests that read what it changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broken_target import LEGAL_VARIANTS, BrokenTarget
from suite_runs import run_suite, statuses

pytestmark = pytest.mark.slow

NDJSON_STREAM = "test_chat.py::test_stream_is_ndjson_by_default"
CHAT_SSE = "test_openai.py::test_chat_stream_grammar"
MESSAGES_SSE = "test_anthropic.py::test_stream_event_order"
# variant -> {test: what its exact-grade message must name}
VARIANTS: dict[str, dict[str, str]] = {
    "sse_comments_crlf": {CHAT_SSE: "lines end with CR or CRLF", MESSAGES_SSE: "lines end with CR or CRLF"},
    "sse_data_no_space": {CHAT_SSE: "`data:` without the space", MESSAGES_SSE: "without the space"},
    "anthropic_pings": {MESSAGES_SSE: "`event: ping`"},
    "extra_fields": {CHAT_SSE: "'x_vendor' was unexpected", "test_chat.py::test_stream_false_is_one_json_object": "'x_vendor' was unexpected",
                     "test_models.py::test_chat_load": "message carries ['x_vendor']"},
    "media_type_params": {NDJSON_STREAM: "charset=utf-8", CHAT_SSE: "charset=utf-8"},
    "optional_null": {CHAT_SSE: "system_fingerprint", "test_openai.py::test_chat_completion_object": "system_fingerprint",
                      "test_models.py::test_ps_lists_loaded_model": "context_length"},
    "split_writes": {NDJSON_STREAM: "inside a stream item", CHAT_SSE: "inside a stream item",
                     MESSAGES_SSE: "inside a stream item"},
}


def test_every_legal_variant_is_run() -> None:
    assert set(VARIANTS) == set(LEGAL_VARIANTS)


@pytest.fixture(scope="module")
def broken(warm_reference_url: str) -> Iterator[BrokenTarget]:
    proxy = BrokenTarget(warm_reference_url).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_legal_variant_passes_and_exact_names_it(broken: BrokenTarget, tmp_path: Path, variant: str) -> None:
    expected = VARIANTS[variant]
    code, results, output = run_suite(broken.url_for(variant), tmp_path, sorted(expected))
    found = statuses(results)
    for test, names in expected.items():
        entry = found.get(f"conformance/suite/{test}")
        assert entry is not None, f"{test} did not run:\n{output[-3000:]}"
        assert entry["status"] == "pass", f"{variant}: {test} is {entry['status']}: {entry['message']}"
        assert entry["exact_status"] == "fail" and names in entry["exact_message"], (
            f"{variant}: {test} exact {entry['exact_status']}: {entry['exact_message']!r} does not name {names!r}")
    assert code == 0, f"a legal variant must pass the default (compatible) gate:\n{output[-2000:]}"
