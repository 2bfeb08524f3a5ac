"""Workloads: multi-turn conversations, trace replay, length distributions; run against the synthetic server.

The synthetic server logs what every generation request asked (GET /synthetic/requests): the ground truth for
what the harness sent, independent of the harness's own labels.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ollama_conformance.errors import UsageError
from ollama_conformance.load.workloads import Lengths, parse_lengths, read_trace, trace_prompt

FAST = ("--ttft-ms", "5", "--interval-ms", "2", "--chunks", "4", "--tokens-per-chunk", "2")


def server_log(server) -> list[dict]:
    return httpx.get(server.url + "/synthetic/requests", timeout=10).json()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64", Lengths("fixed", 64)), ("fixed:8", Lengths("fixed", 8)), ("uniform:4,9", Lengths("uniform", 4, 9)),
     ("uniform:4-9", Lengths("uniform", 4, 9)), ("normal:100,20", Lengths("normal", 100, 20))],
)
def test_length_specs_parse(text: str, expected: Lengths) -> None:
    assert parse_lengths(text, "--x") == expected


@pytest.mark.parametrize("text", ["0", "1.5", "uniform:9,4", "uniform:3", "normal:0,1", "normal:5,-1", "zipf:2", "x"])
def test_bad_length_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid --x"):
        parse_lengths(text, "--x")


def test_length_draws_stay_in_their_distribution() -> None:
    rng = random.Random(3)
    uniform = [Lengths("uniform", 4, 9).draw(rng) for _ in range(2000)]
    assert min(uniform) == 4 and max(uniform) == 9 and set(uniform) == set(range(4, 10))
    normal = [Lengths("normal", 100, 20).draw(rng) for _ in range(4000)]
    mean = sum(normal) / len(normal)
    sd = (sum((v - mean) ** 2 for v in normal) / len(normal)) ** 0.5
    assert abs(mean - 100) < 2 and abs(sd - 20) < 2
    assert min(Lengths("normal", 2, 50).draw(rng) for _ in range(500)) == 1  # clipped at one token


def test_trace_fields_of_ours_mooncake_and_burstgpt(tmp_path: Path) -> None:
    ours = tmp_path / "ours.jsonl"
    ours.write_text('{"at_s": 2.5, "prompt": "hi there", "output_tokens": 7}\n{"at_s": 1.0, "input_tokens": 30}\n')
    entries = read_trace(str(ours))
    assert [(e.at_s, e.prompt, e.input_tokens, e.output_tokens) for e in entries] == \
        [(0.0, None, 30, None), (1.5, "hi there", None, 7)]
    mooncake = tmp_path / "mooncake.jsonl"
    mooncake.write_text('{"timestamp": 0, "input_length": 1024, "output_length": 12, "hash_ids": [1, 2]}\n'
                        '{"timestamp": 250, "input_length": 1536, "output_length": 3, "hash_ids": [1, 2, 3]}\n')
    a, b = read_trace(str(mooncake))
    assert (b.at_s, b.input_tokens, b.output_tokens, b.hash_ids) == (0.25, 1536, 3, [1, 2, 3])
    # shared hash ids are a shared prefix; the first different block makes them differ
    pa, pb = trace_prompt(a), trace_prompt(b)
    assert pb.startswith(pa) and len(pb) > len(pa)
    burst = tmp_path / "burstgpt.csv"
    burst.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     "5,ChatGPT,472,18,490,Conversation log\n7.5,GPT-4,1087,0,1087,API log\n")
    c, d = read_trace(str(burst))
    assert (c.at_s, c.input_tokens, c.output_tokens) == (0.0, 472, 18)
    assert (d.at_s, d.input_tokens, d.output_tokens) == (2.5, 1087, None)  # 0 response tokens: a failed request


@pytest.mark.parametrize(
    ("line", "message"),
    [('{"prompt": "x"}', "needs an arrival time"), ('{"at_s": 0}', "needs a prompt or input tokens"),
     ('{"at_s": 0, "input_tokens": 4, "hash_ids": "ab"}', "hash_ids must be"), ("[1]", "must be a JSON object"),
     ("{oops", "invalid JSON line")],
)
def test_bad_traces_are_one_line_usage_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(UsageError, match=message):
        read_trace(str(path))


@pytest.mark.parametrize("surface", ["openai", "native"])
def test_multi_turn_resends_the_grown_history_with_a_shared_system_prompt(synthetic, bench, surface) -> None:
    server = synthetic(*FAST)
    run = bench(target=server.url, surface=surface, workload="multi-turn", turns=3, system_prompt_tokens=40,
                concurrency=[2], duration_s=None, requests=12, preload=False)
    assert run.status == 0
    step = run.results["steps"][0]
    assert step["requests"]["ok"] >= 12 and step["requests"]["error"] == 0
    log = server_log(server)
    systems = {r["contents"][0] for r in log}
    assert len(systems) == 1 and len(next(iter(systems)).split()) >= 40  # one prefix shared by every conversation
    answer = " tok" * 8  # what the server streamed: 4 chunks of 2 tokens
    for r in log:
        roles = r["roles"]
        turns = (len(roles) - 1 + 1) // 2
        assert roles == ["system"] + ["user", "assistant"] * (turns - 1) + ["user"]
        # the assistant turns resent are the server's own answers, verbatim
        assert all(c == answer for c, role in zip(r["contents"], roles, strict=True) if role == "assistant")
    assert Counter(len(r["roles"]) for r in log).keys() <= {2, 4, 6}
    samples = run.step_samples()
    assert {s["turn"] for s in samples} == {1, 2, 3}
    for s in samples:
        assert s["history_messages"] == 2 * s["turn"]
    # a conversation's turns went out in order, each after the previous answer
    by_conv: dict[str, list[dict]] = {}
    for s in samples:
        by_conv.setdefault(f"{s['worker']}/{s['conversation']}", []).append(s)
    for turns in by_conv.values():
        turns.sort(key=lambda s: s["turn"])
        assert all(b["start_ns"] >= a["end_ns"] for a, b in itertools.pairwise(turns))


def test_trace_replay_keeps_the_traces_times_and_lengths(synthetic, bench, tmp_path: Path) -> None:
    server = synthetic(*FAST)
    trace = tmp_path / "mooncake.jsonl"
    rows = [{"timestamp": t, "input_length": 20 + i, "output_length": 2 * (i % 3 + 1), "hash_ids": [7, i]}
            for i, t in enumerate([0, 100, 150, 400, 420, 700, 900, 1000])]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = bench(target=server.url, surface="openai", workload="trace", trace=str(trace), trace_speed=2.0,
                duration_s=10.0, preload=False)
    assert run.status == 0
    step = run.results["steps"][0]
    assert step["mode"] == "trace" and step["name"] == "trace=x2"
    samples = sorted(run.step_samples(), key=lambda s: s["intended_start_ns"])
    assert len(samples) == 8 and all(s["status"] == "ok" for s in samples)
    t0 = samples[0]["intended_start_ns"]
    # intended starts follow the trace at twice its speed, to the ns (latencies count from them)
    assert [round((s["intended_start_ns"] - t0) / 1e6, 3) for s in samples] == [r["timestamp"] / 2 for r in rows]
    assert [s["output_tokens_asked"] for s in samples] == [r["output_length"] for r in rows]
    assert [s["output_tokens"] for s in samples] == [r["output_length"] for r in rows]  # 2-token chunks
    asked = sorted((r["max_tokens"], r["contents"][0]) for r in server_log(server))
    assert [a for a, _ in asked] == sorted(r["output_length"] for r in rows)
    prefix = trace_prompt(read_trace(str(trace))[0])[: len("Count:") + 10 * 5]
    assert all(text.startswith(prefix) for _, text in asked)  # hash id 7 first everywhere: a shared prefix


def test_length_distributions_reach_the_server(synthetic, bench) -> None:
    server = synthetic(*FAST)
    run = bench(target=server.url, surface="native", input_lengths="uniform:10,40", output_lengths="uniform:1,8",
                concurrency=[2], duration_s=None, requests=30, preload=False, seed=5)
    assert run.status == 0
    log = server_log(server)
    words = [r["prompt_words"] for r in log]
    caps = [r["max_tokens"] for r in log]
    assert min(words) >= 10 and max(words) <= 40 and len(set(words)) > 5
    assert set(caps) <= set(range(1, 9)) and len(set(caps)) > 3
    for s in run.step_samples():
        assert s["output_tokens"] == -(-s["output_tokens_asked"] // 2) * 2  # whole 2-token chunks up to the cap
        assert 10 <= s["input_tokens_asked"] <= 40
