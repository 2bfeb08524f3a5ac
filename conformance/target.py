"""The server under test: where it is, how to authenticate, and what it offers (discovered, never assumed).

Each surface is discovered on its own, so a server that implements only some of them is checked on those:
- native: `GET /api/version` or `GET /api/tags` answering as Ollama does, else a `POST /api/chat` that reaches
  its route (then `/api/show` of each model, as the official clients do); a missing /api/version is then the
  failure of server.version alone;
- openai: `GET /v1/models`; without it, a capped `POST /v1/chat/completions` (then `--model` names the model);
- anthropic: a minimal capped `POST /v1/messages` (max_tokens 1);
- cloud: the cloud profile, or the daemon-side cloud rules on a server with the native surface.
A surface is *absent* when its probe gets no route (404/405/501 without an error body of that surface) or no
HTTP answer; the evidence (request, status, first 200 characters) goes into the results. `TargetError` (exit 3)
is raised only when nothing at the URL answers HTTP at all, or the key is refused.

A model's capabilities are *unknown* (None) when /api/show does not give them (no native surface, an older
Ollama, a proxy): tests needing a capability then run anyway and say so; only a capability that show says the
model lacks makes a test not applicable.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ollama_conformance.errors import TargetError, UsageError

PROFILES = ("reference", "local", "cloud")
SURFACES = ("native", "openai", "anthropic", "cloud")
DEFAULT_URLS = {"local": "http://localhost:11434", "cloud": "https://ollama.com"}
DEFAULT_API_KEY_ENV = "OLLAMA_API_KEY"
# Statuses a router gives a path (or method) it does not serve; with no error body of the surface, the route is absent.
NO_ROUTE_STATUSES = (404, 405, 501)
DETAIL_CHARS = 200
PROBE_MODEL = "conformance-probe-no-such-model"  # route probes: an error body of the surface still proves the route
PROBE_MESSAGES = [{"role": "user", "content": "Hi"}]


@dataclass
class ModelInfo:
    name: str
    digest: str | None = None
    capabilities: list[str] | None = None  # None: unknown (no /api/show, or no `capabilities` in it)


@dataclass
class Evidence:
    """What one discovery request got: `status` None when there was no HTTP answer (then `detail` is the error)."""

    request: str
    status: int | None
    detail: str

    def short(self) -> str:
        got = str(self.status) if self.status is not None else "no HTTP answer"
        text = " ".join(self.detail.split())[:80]
        return f"{self.request} → {got}" + (f" {text!r}" if text else "")


@dataclass
class SurfaceProbe:
    present: bool
    evidence: Evidence | None = None


@dataclass
class Target:
    """Everything a test needs to talk to the server. `api_key` is never serialised or printed."""

    url: str
    profile: str
    api_key: str | None = field(default=None, repr=False)
    version: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    chat_model: str | None = None
    embed_model: str | None = None
    timeout_s: float = 60.0
    allow_mutations: bool = False
    surfaces: dict[str, SurfaceProbe] = field(default_factory=dict)
    selected: tuple[str, ...] = ()  # surfaces the user asked for; empty: all

    def __repr__(self) -> str:  # never the key, never credentials in the URL
        return f"Target(url={self.public_url()!r}, profile={self.profile!r}, version={self.version!r})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def capabilities(self, model: str | None) -> list[str] | None:
        """The model's capabilities from /api/show; None when they are unknown."""
        for info in self.models:
            if info.name == model:
                return info.capabilities
        return None

    def has_surface(self, surface: str) -> bool:
        """Discovery found the surface (whether or not the user selected it). Unprobed: assumed present."""
        probe = self.surfaces.get(surface)
        return probe is None or probe.present

    def absent_reason(self, surface: str) -> str | None:
        """One line naming why a surface is absent ("native surface absent: GET /api/version → 404"), else None."""
        probe = self.surfaces.get(surface)
        if probe is None or probe.present:
            return None
        return f"{surface} surface absent: " + (probe.evidence.short() if probe.evidence else "not found")

    def surface_states(self) -> dict[str, dict[str, Any]]:
        """The `surfaces` object of the results file."""
        out: dict[str, dict[str, Any]] = {}
        for name in SURFACES:
            probe = self.surfaces.get(name)
            if self.selected and name not in self.selected:
                state = "not_selected"
            else:
                state = "present" if probe is None or probe.present else "absent"
            out[name] = {"state": state, "evidence": asdict(probe.evidence) if probe and probe.evidence else None}
        return out

    def public_url(self) -> str:
        return redact_url(self.url)

    def to_json(self) -> dict[str, Any]:
        """The serialisable description (no secrets): used in the results file and to hand over to xdist workers."""
        return {
            "url": self.public_url(),
            "profile": self.profile,
            "version": self.version,
            "models": [asdict(m) for m in self.models],
            "chat_model": self.chat_model,
            "embed_model": self.embed_model,
            "surfaces": {k: asdict(v) for k, v in self.surfaces.items()},
            "selected": list(self.selected),
        }


def redact_url(url: str) -> str:
    """Drop user:password and the query string (where tokens hide) from a URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--target must be an http(s) URL like http://localhost:11434, got {url!r}")
    return url


def resolve_api_key(profile: str, api_key_env: str | None) -> str | None:
    """The key comes from the environment only: the variable named, or OLLAMA_API_KEY on the cloud profile."""
    name = api_key_env or (DEFAULT_API_KEY_ENV if profile == "cloud" else None)
    return (os.environ.get(name) or None) if name else None


def missing_key_reason(profile: str, api_key_env: str | None) -> str | None:
    """Why a cloud run cannot apply (no key: every test is not applicable, no request is sent); None otherwise."""
    if profile != "cloud" or resolve_api_key(profile, api_key_env):
        return None
    if api_key_env:
        return f"no API key: the variable {api_key_env} named by --api-key-env is unset or empty (set it to check Ollama Cloud)"
    return f"no API key: set {DEFAULT_API_KEY_ENV} (or --api-key-env NAME) to check Ollama Cloud"


# --- probing ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One discovery exchange: the HTTP answer (status None: none came) and its JSON body when it has one."""

    evidence: Evidence
    body: Any = None
    transport_error: str = ""

    @property
    def ok(self) -> bool:
        return self.evidence.status is not None and 200 <= self.evidence.status < 300


def _ask(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
    request = f"{method} {path}"
    try:
        response = client.request(method, path, json=body)
    except httpx.TimeoutException as exc:
        error = (f"{request}: no answer within {client.timeout.read:g} s ({type(exc).__name__}); "
                 "a server still loading its model may need a longer --discovery-timeout")
        return Answer(Evidence(request, None, error[:DETAIL_CHARS]), transport_error=error)
    except httpx.TransportError as exc:
        error = f"{request}: cannot reach the target: {exc or type(exc).__name__}"
        return Answer(Evidence(request, None, error[:DETAIL_CHARS]), transport_error=error)
    if response.status_code in (401, 403):
        raise TargetError(f"{request}: HTTP {response.status_code}: check the API key (--api-key-env)")
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    return Answer(Evidence(request, response.status_code, response.text[:DETAIL_CHARS]), parsed)


_ONE_TOKEN = {"num_predict": 1}
_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The current time",
                                          "parameters": {"type": "object", "properties": {}}}}
# What Ollama refuses for a model without the capability (400 "... does not support <capability>"; embeddings from
# a model without them fail with a 500): one token each. Images sent to a model without vision are not refused by Ollama, so
# no probe can tell a false claim there.
CAPABILITY_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "completion": ("/api/generate", {"prompt": "Hi", "stream": False, "options": _ONE_TOKEN}),
    "tools": ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}], "tools": [_TOOL], "stream": False,
                            "options": _ONE_TOKEN}),
    "thinking": ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}], "think": True, "stream": False,
                               "options": _ONE_TOKEN}),
    "insert": ("/api/generate", {"prompt": "def f(", "suffix": ")", "stream": False, "options": _ONE_TOKEN}),
    "embedding": ("/api/embed", {"input": "Hi"}),
}


def probe_capability(client: httpx.Client, model: str, capability: str) -> Evidence | None:
    """The answer to a one-token request that needs `capability` for `model`; None when no request can tell (no
    probe for that capability). Judge it with `refuses_capability`."""
    probe = CAPABILITY_PROBES.get(capability)
    if probe is None:
        return None
    path, body = probe
    return _ask(client, "POST", path, {"model": model, **body}).evidence


def refuses_capability(evidence: Evidence, capability: str) -> bool:
    """Whether the answer is a refusal as Ollama gives it for a model without the capability: a 4xx (a 500 for
    embeddings). Anything else (served, a crash, no answer) does not excuse the capability's tests: they run and
    show what the server does."""
    status = evidence.status
    if status is None:
        return False
    return 400 <= status < 500 or (capability == "embedding" and status == 500)


def _route_absent(answer: Answer, *, anthropic: bool = False, native: bool = False) -> bool:
    """No HTTP answer, or a router's "no such route" (404/405/501 without an error object of the surface: a
    native error is `{"error": "<message>"}`, so llama-server's `{"error": {"message": "File Not Found"}}` on an
    /api route is its router's, not the route's)."""
    status = answer.evidence.status
    if status is None:
        return True
    if status not in NO_ROUTE_STATUSES:
        return False
    body = answer.body if isinstance(answer.body, dict) else {}
    if anthropic:
        return body.get("type") != "error"
    if native:
        return not isinstance(body.get("error"), str)
    return "error" not in body  # {"error": ...} is an answer of the route (e.g. model not found)


def discover(
    url: str,
    *,
    profile: str = "local",
    api_key: str | None = None,
    chat_model: str | None = None,
    embed_model: str | None = None,
    timeout_s: float = 60.0,
    allow_mutations: bool = False,
    surfaces: tuple[str, ...] = (),
) -> Target:
    """Ask the target which surfaces and models it serves; pick a chat and an embedding model."""
    target = Target(url=url, profile=profile, api_key=api_key, timeout_s=timeout_s, allow_mutations=allow_mutations,
                    selected=tuple(surfaces))
    answers: list[Answer] = []
    with httpx.Client(base_url=url, headers=target.headers(), timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))) as client:
        chat_model = _discover_native(client, target, chat_model, embed_model, answers)
        listed = _discover_openai(client, target, chat_model, answers)
        target.chat_model = chat_model or _first_with(target.models, "completion") or _first_unknown(target.models) or (
            listed[0] if listed else None)
        if not target.surfaces["openai"].present and not answers[-1].transport_error:
            _probe_openai_chat(client, target, answers)  # no /v1/models: the chat route may still be served
        _discover_anthropic(client, target, answers)
    target.embed_model = embed_model or _first_with(target.models, "embedding")
    if all(a.transport_error for a in answers):  # nothing answered HTTP: the URL is unusable
        raise TargetError(answers[0].transport_error)
    native_probe = target.surfaces["native"]
    target.surfaces["cloud"] = (
        SurfaceProbe(True, None) if profile == "cloud" else SurfaceProbe(native_probe.present, native_probe.evidence)
    )
    return target


def _discover_native(client: httpx.Client, target: Target, chat_model: str | None, embed_model: str | None,
                     answers: list[Answer]) -> str | None:
    """Probe /api/version, then list and show the models; returns the chat model (the cloud profile picks one)."""
    version = _ask(client, "GET", "/api/version")
    answers.append(version)
    tags = _ask(client, "GET", "/api/tags")
    answers.append(tags)
    # present when any of its routes answers as the native surface: a server without /api/version (one failure
    # of its own, server.version) is still checked on everything else it serves
    evidence = version.evidence
    present = version.ok and isinstance(version.body, dict)
    if not present and tags.ok and isinstance(tags.body, dict) and isinstance(tags.body.get("models"), list):
        present, evidence = True, tags.evidence
    if not present:
        chat = _ask(client, "POST", "/api/chat", {"model": chat_model or PROBE_MODEL, "messages": PROBE_MESSAGES,
                                                   "stream": False, "options": _ONE_TOKEN})
        answers.append(chat)
        if chat.evidence.status is not None and not _route_absent(chat, native=True):
            present, evidence = True, chat.evidence
    target.surfaces["native"] = SurfaceProbe(present, version.evidence if not present else evidence)
    if not present:
        return chat_model
    if version.ok and isinstance(version.body, dict) and isinstance(version.body.get("version"), str):
        target.version = version.body["version"]
    entries = tags.body.get("models") if tags.ok and isinstance(tags.body, dict) else None
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    names = [e.get("model") or e.get("name") for e in entries]
    if target.profile == "cloud" and not chat_model:  # a small default keeps a real-cloud run cheap
        from ollama_conformance.conformance.cloud_profile import preferred_cloud_model

        chat_model = preferred_cloud_model(names)
    wanted = [n for n in (chat_model, embed_model) if n]
    for name in dict.fromkeys([*wanted, *names]):
        if name and (not wanted or name in wanted or len(target.models) < 8):
            target.models.append(_show(client, name, entries, listed=name in names))
    return chat_model


def _show(client: httpx.Client, name: str, entries: list[dict[str, Any]], *, listed: bool) -> ModelInfo:
    digest = next((e.get("digest") for e in entries if name in (e.get("model"), e.get("name"))), None)
    shown = _ask(client, "POST", "/api/show", {"model": name})
    if shown.evidence.status == 404 and entries and not listed and isinstance(shown.body, dict) and "error" in shown.body:
        names = ", ".join(str(e.get("model") or e.get("name")) for e in entries[:8])
        raise UsageError(f"model {name!r} is not on the target (POST /api/show answered 404; /api/tags lists {names})")
    capabilities = shown.body.get("capabilities") if shown.ok and isinstance(shown.body, dict) else None
    known = [str(c) for c in capabilities] if isinstance(capabilities, list) else None
    return ModelInfo(name=name, digest=digest if isinstance(digest, str) else None, capabilities=known)


def _discover_openai(client: httpx.Client, target: Target, chat_model: str | None, answers: list[Answer]) -> list[str]:
    listed = _ask(client, "GET", "/v1/models")
    answers.append(listed)
    target.surfaces["openai"] = SurfaceProbe(not _route_absent(listed), listed.evidence)
    data = listed.body.get("data") if listed.ok and isinstance(listed.body, dict) else None
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")] if isinstance(data, list) else []


def _probe_openai_chat(client: httpx.Client, target: Target, answers: list[Answer]) -> None:
    # A model name no server has: a route that exists answers it at once (an error object, or one token from a
    # server that ignores the name) without loading a model, which could outlast the discovery timeout.
    body = {"model": PROBE_MODEL, "messages": PROBE_MESSAGES, "max_tokens": 1, "stream": False}
    chat = _ask(client, "POST", "/v1/chat/completions", body)
    answers.append(chat)
    if not _route_absent(chat):
        target.surfaces["openai"] = SurfaceProbe(True, chat.evidence)


def _discover_anthropic(client: httpx.Client, target: Target, answers: list[Answer]) -> None:
    body = {"model": PROBE_MODEL, "max_tokens": 1, "messages": PROBE_MESSAGES}  # as in _probe_openai_chat
    got = _ask(client, "POST", "/v1/messages", body)
    answers.append(got)
    target.surfaces["anthropic"] = SurfaceProbe(not _route_absent(got, anthropic=True), got.evidence)


def _first_with(models: list[ModelInfo], capability: str) -> str | None:
    return next((m.name for m in models if m.capabilities and capability in m.capabilities), None)


def _first_unknown(models: list[ModelInfo]) -> str | None:
    """A model whose capabilities are unknown: the chat model when no model is known to complete."""
    return next((m.name for m in models if m.capabilities is None), None)


def from_json(data: dict[str, Any], *, url: str, api_key: str | None, timeout_s: float, allow_mutations: bool) -> Target:
    """Rebuild a discovered Target (xdist workers receive it from the controller instead of re-discovering)."""
    return Target(
        url=url,
        profile=data["profile"],
        api_key=api_key,
        version=data.get("version"),
        models=[ModelInfo(**m) for m in data.get("models", [])],
        chat_model=data.get("chat_model"),
        embed_model=data.get("embed_model"),
        timeout_s=timeout_s,
        allow_mutations=allow_mutations,
        surfaces={k: SurfaceProbe(v["present"], Evidence(**v["evidence"]) if v.get("evidence") else None)
                  for k, v in (data.get("surfaces") or {}).items()},
        selected=tuple(data.get("selected") or ()),
    )


def known_capabilities(target: Target, model: str | None) -> list[str]:
    """The model's capabilities for a test that needs to know them (a refusal applies only to a model that lacks
    one): not applicable, saying why, when /api/show did not give them."""
    capabilities = target.capabilities(model)
    if capabilities is None:
        import pytest

        pytest.skip(f"precondition show.capabilities missing: /api/show gives no `capabilities` for {model} "
                    "(that feature fails for it), so whether this refusal applies cannot be told")
    return capabilities
