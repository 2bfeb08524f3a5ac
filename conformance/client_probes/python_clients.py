"""Scenarios for the Python clients, run in-process: ollama-python, openai and anthropic.

Each scenario is what a user writes with that client; an assertion checks only what the client hands back
(types, fields a user reads), never the generated text. Error scenarios pass only when the client raises its
own exception type with the status a user would branch on.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable

from ollama_conformance.conformance.client_probes.model import (
    ANSWER_SCHEMA,
    CAP,
    SEED,
    TOOL,
    ClientResult,
    Steps,
    check,
    run_scenarios,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]
UNKNOWN_MODEL = "no-such-model-xyz:1b"  # its name must be in the error: a missing route's 404 is not "model not found"
Scenario = tuple[str, Callable[[Steps], None]]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None



# --- ollama-python --------------------------------------------------------------------------------------------


def ollama_scenarios(url: str, model: str, embed_model: str | None) -> list[Scenario]:
    import ollama

    client = ollama.Client(host=url, timeout=120)
    options = {"temperature": 0, "seed": SEED, "num_predict": CAP}

    def list_models(step: Steps) -> None:
        with step("client.list()"):
            listed = client.list()
        check(bool(listed.models), "client.list() gave no models")
        check(all(isinstance(m.model, str) and m.model for m in listed.models), "a listed model has no name")

    def show(step: Steps) -> None:
        with step(f"client.show({model!r})"):
            shown = client.show(model)
        check(shown.details is not None, "show: no details")
        check(shown.capabilities is None or "completion" in shown.capabilities, "show: capabilities lack 'completion'")

    def chat(step: Steps) -> None:
        with step("client.chat(model, messages)"):
            answer = client.chat(model=model, messages=MESSAGES, options=options)
        check(answer.message.role == "assistant", f"message.role is {answer.message.role!r}")
        check(isinstance(answer.message.content, str), "message.content is not a string")
        check(answer.done is True, "done is not true")

    def chat_stream(step: Steps) -> None:
        with step("client.chat(model, messages, stream=True)"):
            chunks = list(client.chat(model=model, messages=MESSAGES, options=options, stream=True))
        check(len(chunks) >= 2, f"{len(chunks)} chunk(s)")
        check(chunks[-1].done is True and all(not c.done for c in chunks[:-1]), "done is not true exactly on the last chunk")

    def generate(step: Steps) -> None:
        with step("client.generate(model, prompt)"):
            answer = client.generate(model=model, prompt="Hello", options=options)
        check(isinstance(answer.response, str) and answer.done is True, "no response text or not done")

    def generate_stream(step: Steps) -> None:
        with step("client.generate(model, prompt, stream=True)"):
            chunks = list(client.generate(model=model, prompt="Hello", options=options, stream=True))
        check(bool(chunks) and chunks[-1].done is True, "the stream did not end with done")
        check(chunks[-1].eval_count is not None, "the final chunk has no eval_count")

    def embed(step: Steps) -> None:
        check(embed_model is not None, "no embedding model on the target")
        with step(f"client.embed({embed_model!r}, input=[2 texts])"):
            answer = client.embed(model=embed_model, input=["first text", "second text"])
        check(len(answer.embeddings) == 2, f"{len(answer.embeddings)} embeddings for 2 inputs")
        check(len(answer.embeddings[0]) == len(answer.embeddings[1]) > 0, "embeddings of different or zero length")

    def tools(step: Steps) -> None:
        tool = {"type": "function", "function": TOOL}
        question = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        with step("client.chat(model, messages, tools=[get_weather])"):
            first = client.chat(model=model, messages=question, tools=[tool], options=options)
        calls = first.message.tool_calls or []
        for call in calls:  # what the model chose is its business; what the client parsed must be usable
            check(isinstance(call.function.name, str) and isinstance(call.function.arguments, dict),
                  "a tool call without a name or with arguments that are not an object")
        # Leg 2 always runs: the client sends an assistant tool call and the tool's answer back.
        call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        history = [*question, {"role": "assistant", "content": "", "tool_calls": [call]},
                   {"role": "tool", "content": '{"temperature_c": 18}', "tool_name": "get_weather"}]
        with step("client.chat(model, messages + [assistant tool_calls, tool result], tools=[get_weather])"):
            second = client.chat(model=model, messages=history, tools=[tool], options=options)
        check(second.message.role == "assistant", "no assistant message after the tool result")

    def structured(step: Steps) -> None:
        prompt = [{"role": "user", "content": "Is the sky blue? Answer as JSON."}]
        with step("client.chat(model, messages, format=<JSON schema>)"):
            answer = client.chat(model=model, messages=prompt, format=ANSWER_SCHEMA, options={**options, "num_predict": 32})
        check(answer.done_reason != "length", "the constrained answer did not end within 32 tokens")
        data = json.loads(answer.message.content)
        check(isinstance(data, dict) and isinstance(data.get("answer"), bool), f"content does not match the schema: {data!r}")

    def error_unknown_model(step: Steps) -> None:
        with step(f"client.chat({UNKNOWN_MODEL!r}, messages)"):
            try:
                client.chat(model=UNKNOWN_MODEL, messages=MESSAGES, options=options)
            except ollama.ResponseError as exc:
                check(exc.status_code == 404, f"ResponseError with status {exc.status_code}, expected 404")
                check(UNKNOWN_MODEL in str(exc.error), f"the error does not name the model: {exc.error!r}")
                return
        check(False, "no ollama.ResponseError for an unknown model")

    def error_stream_unknown_model(step: Steps) -> None:
        with step(f"client.generate({UNKNOWN_MODEL!r}, prompt, stream=True)"):
            try:
                list(client.generate(model=UNKNOWN_MODEL, prompt="x", options=options, stream=True))
            except ollama.ResponseError as exc:
                check(exc.status_code == 404, f"ResponseError with status {exc.status_code}, expected 404")
                check(UNKNOWN_MODEL in str(exc.error), f"the error does not name the model: {exc.error!r}")
                return
        check(False, "no ollama.ResponseError for an unknown model in a stream")

    def ps(step: Steps) -> None:
        with step("client.ps()"):
            running = client.ps()
        check(isinstance(running.models, list), "ps: models is not a list")

    return [("list", list_models), ("show", show), ("chat", chat), ("chat stream", chat_stream), ("generate", generate),
            ("generate stream", generate_stream), ("embed", embed), ("tool round trip", tools),
            ("structured output", structured), ("error: unknown model", error_unknown_model),
            ("error: unknown model in a stream", error_stream_unknown_model), ("ps", ps)]


# --- openai (Python) ------------------------------------------------------------------------------------------


def openai_scenarios(url: str, model: str, embed_model: str | None) -> list[Scenario]:
    import openai

    client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="ollama", timeout=120, max_retries=0)
    common = {"max_tokens": CAP, "temperature": 0, "seed": SEED}

    def models(step: Steps) -> None:
        with step("client.models.list()"):
            listed = list(client.models.list())
        check(any(m.id == model for m in listed), f"{model} is not in models.list()")

    def chat(step: Steps) -> None:
        with step("client.chat.completions.create(model, messages)"):
            answer = client.chat.completions.create(model=model, messages=MESSAGES, **common)
        choice = answer.choices[0]
        check(choice.message.role == "assistant" and isinstance(choice.message.content, str), "no assistant text")
        check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
        check(answer.usage is not None and answer.usage.completion_tokens > 0, "no usage")

    def chat_stream(step: Steps) -> None:
        with step("client.chat.completions.create(model, messages, stream=True)"):
            chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **common))
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        check(len(finishes) == 1, f"{len(finishes)} finish_reason(s) in the stream")
        check(len({c.id for c in chunks}) == 1, "chunks of one stream carry different ids")

    def completion(step: Steps) -> None:
        with step("client.completions.create(model, prompt)"):
            answer = client.completions.create(model=model, prompt="Hello", **common)
        check(isinstance(answer.choices[0].text, str), "no completion text")

    def embeddings(step: Steps) -> None:
        check(embed_model is not None, "no embedding model on the target")
        with step("client.embeddings.create(model, input=[2 texts])"):
            answer = client.embeddings.create(model=embed_model, input=["first text", "second text"])
        check([d.index for d in answer.data] == [0, 1], "embeddings not indexed 0, 1")

    def tools(step: Steps) -> None:
        tool = {"type": "function", "function": TOOL}
        question = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        with step("client.chat.completions.create(model, messages, tools=[get_weather])"):
            first = client.chat.completions.create(model=model, messages=question, tools=[tool], **common)
        for call in first.choices[0].message.tool_calls or []:
            check(isinstance(json.loads(call.function.arguments), dict), "tool call arguments are not a JSON object")
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        history = [*question, {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18}'}]
        with step("client.chat.completions.create(model, messages + [tool_calls, tool result], tools=[get_weather])"):
            second = client.chat.completions.create(model=model, messages=history, tools=[tool], **common)
        check(second.choices[0].message.role == "assistant", "no assistant message after the tool result")

    def structured(step: Steps) -> None:
        prompt = [{"role": "user", "content": "Is the sky blue? Answer as JSON."}]
        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
        with step("client.chat.completions.create(model, messages, response_format=json_schema)"):
            answer = client.chat.completions.create(model=model, messages=prompt, response_format=fmt,
                                                    **{**common, "max_tokens": 32})
        check(answer.choices[0].finish_reason != "length", "the constrained answer did not end within 32 tokens")
        data = json.loads(answer.choices[0].message.content or "")
        check(isinstance(data, dict) and isinstance(data.get("answer"), bool), f"content does not match the schema: {data!r}")

    def error_unknown_model(step: Steps) -> None:
        with step(f"client.chat.completions.create({UNKNOWN_MODEL!r}, messages)"):
            try:
                client.chat.completions.create(model=UNKNOWN_MODEL, messages=MESSAGES, **common)
            except openai.NotFoundError as exc:
                check(UNKNOWN_MODEL in str(exc), f"the error does not name the model: {str(exc)[:120]!r}")
                return
        check(False, "no openai.NotFoundError for an unknown model")

    def error_bad_request(step: Steps) -> None:
        with step("client.chat.completions.create(model, messages=[])"):
            try:
                client.chat.completions.create(model=model, messages=[], **common)
            except openai.BadRequestError:
                return
        check(False, "no openai.BadRequestError for an empty messages list")

    return [("models.list", models), ("chat", chat), ("chat stream", chat_stream), ("completion", completion), ("embeddings", embeddings), ("tool round trip", tools),
            ("structured output", structured), ("error: unknown model", error_unknown_model),
            ("error: bad request", error_bad_request)]


# --- anthropic (Python) ---------------------------------------------------------------------------------------


def anthropic_scenarios(url: str, model: str, embed_model: str | None) -> list[Scenario]:
    import anthropic

    client = anthropic.Anthropic(base_url=url.rstrip("/"), api_key="ollama", timeout=120, max_retries=0)
    common = {"max_tokens": CAP}  # this SDK has no temperature argument: the cap keeps answers short

    def message(step: Steps) -> None:
        with step("client.messages.create(model, messages)"):
            answer = client.messages.create(model=model, messages=MESSAGES, **common)
        check(answer.role == "assistant" and answer.type == "message", "not an assistant message")
        check(answer.stop_reason in ("end_turn", "max_tokens", "stop_sequence"), f"stop_reason {answer.stop_reason!r}")
        check(answer.usage.output_tokens > 0, "no output token usage")

    def stream(step: Steps) -> None:
        with step("client.messages.stream(model, messages).get_final_message()"), \
                client.messages.stream(model=model, messages=MESSAGES, **common) as events:
            final = events.get_final_message()
        check(final.stop_reason is not None, "the accumulated message has no stop_reason")

    def raw_stream(step: Steps) -> None:
        with step("client.messages.create(model, messages, stream=True)"):
            kinds = [event.type for event in client.messages.create(model=model, messages=MESSAGES, stream=True, **common)]
        check(kinds[:1] == ["message_start"] and kinds[-1:] == ["message_stop"], f"events {kinds[:2]}…{kinds[-2:]}")

    def tools(step: Steps) -> None:
        tool = {"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["parameters"]}
        question = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        with step("client.messages.create(model, messages, tools=[get_weather])"):
            first = client.messages.create(model=model, messages=question, tools=[tool], **common)
        for block in first.content:
            if block.type == "tool_use":
                check(isinstance(block.input, dict), "tool_use input is not an object")
        history = [*question,
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temperature_c": 18}'}]}]
        with step("client.messages.create(model, messages + [tool_use, tool_result], tools=[get_weather])"):
            second = client.messages.create(model=model, messages=history, tools=[tool], **common)
        check(second.role == "assistant", "no assistant message after the tool result")

    def error_unknown_model(step: Steps) -> None:
        with step(f"client.messages.create({UNKNOWN_MODEL!r}, messages)"):
            try:
                client.messages.create(model=UNKNOWN_MODEL, messages=MESSAGES, **common)
            except anthropic.NotFoundError as exc:
                check(UNKNOWN_MODEL in str(exc), f"the error does not name the model: {str(exc)[:120]!r}")
                return
        check(False, "no anthropic.NotFoundError for an unknown model")

    return [("messages", message), ("messages stream helper", stream), ("messages raw stream", raw_stream),
            ("tool round trip", tools), ("error: unknown model", error_unknown_model)]


PYTHON_CLIENTS: dict[str, tuple[str, Callable[[str, str, str | None], list[Scenario]]]] = {
    "ollama-python": ("ollama", ollama_scenarios),
    "openai-python": ("openai", openai_scenarios),
    "anthropic-python": ("anthropic", anthropic_scenarios),
}


def run_python_client(name: str, url: str, model: str, embed_model: str | None) -> ClientResult:
    package, build = PYTHON_CLIENTS[name]
    version = _version(package)
    if version is None:
        return ClientResult(name, "python", None, "not_applicable", f"the {package} package is not installed")
    return ClientResult(name, "python", version, "ran", scenarios=run_scenarios(build(url, model, embed_model)))
