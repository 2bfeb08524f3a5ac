"""The daemon's account, experimental and audio routes, checked where no account is needed.

A daemon not signed in to ollama.com answers /api/me and /api/signout with 401; an offline one with 503 / 500
(both declared by the spec). A signed-in target is never signed out: the sign-out checks skip when /api/me says
the target is signed in.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid

import pytest

from ollama_conformance.conformance.checks import Api, Captured

SIGNIN_URL = re.compile(r"^https://ollama\.com/connect\?name=[^&]*&key=([A-Za-z0-9_-]+)$")


def _signed_in(api: Api) -> bool:
    return api.post("/api/me").status == 200


def _multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, data in files.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def _wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A silent mono 16-bit PCM WAV file."""
    samples = b"\x00\x00" * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _transcribe(api: Api, fields: dict[str, str], files: dict[str, bytes]) -> Captured:
    body, content_type = _multipart(fields, files)
    return api.call("POST", "/v1/audio/transcriptions", raw=body, headers={"Content-Type": content_type})


@pytest.mark.feature("account.me.signed_out")
def test_me_answers_the_account_or_how_to_sign_in(api: Api) -> None:
    got = api.post("/api/me")
    (body,) = api.contract("POST", "/api/me", got)
    if got.status != 401:
        return  # signed in (200, the account) or ollama.com unreachable (503): the contract above is the check
    match = SIGNIN_URL.match(body["signin_url"])
    assert match, f"signin_url {body['signin_url']!r} is not https://ollama.com/connect?name=<host>&key=<key>"
    key = match.group(1)
    decoded = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode("utf-8", "replace")
    # ollama.com connects the key it is given: the daemon's public key in authorized_keys form
    assert decoded.startswith("ssh-ed25519 "), f"signin_url key decodes to {decoded[:40]!r}, not an ssh-ed25519 key"


@pytest.mark.feature("account.signout.signed_out")
def test_signout_when_signed_out(api: Api) -> None:
    if _signed_in(api):
        pytest.skip("the target is signed in to ollama.com; signing it out would change it")
    got = api.post("/api/signout")
    api.contract("POST", "/api/signout", got)
    assert got.status in (401, 500), f"sign-out of a daemon not signed in answered {got.status}: {got.text[:200]!r}"
    api.native_error(got, (401, 500))


@pytest.mark.feature("account.keys.deprecated")
def test_deprecated_key_delete_answers_as_signout(api: Api) -> None:
    if _signed_in(api):
        pytest.skip("the target is signed in to ollama.com; signing it out would change it")
    signout = api.post("/api/signout")
    got = api.call("DELETE", "/api/user/keys/c3NoLWVkMjU1MTkgQUFBQQ")
    api.contract("DELETE", "/api/user/keys/{encodedKey}", got)
    assert got.status == signout.status, f"DELETE /api/user/keys answered {got.status}, /api/signout {signout.status}"
    assert api.native_error(got, got.status) == api.native_error(signout, signout.status)


@pytest.mark.feature("experimental.web_proxy.empty_body")
@pytest.mark.parametrize("path", ["/api/experimental/web_search", "/api/experimental/web_fetch"])
def test_web_proxy_refuses_an_empty_body(api: Api, path: str) -> None:
    got = api.call("POST", path, raw=b"")
    message = api.native_error(got, 400)
    api.contract("POST", path, got)
    assert message == "missing request body", f"{path} with no body: {message!r}"


@pytest.mark.feature("experimental.model_recommendations")
def test_model_recommendations(api: Api) -> None:
    got = api.get("/api/experimental/model-recommendations")
    (body,) = api.contract("GET", "/api/experimental/model-recommendations", got)
    for item in body["recommendations"] or []:
        assert item["model"], f"a recommendation without a model name: {item}"


@pytest.mark.feature("openai.audio.transcriptions.validation")
def test_transcription_not_multipart_is_refused(api: Api) -> None:
    got = api.post("/v1/audio/transcriptions", {"model": "x"})
    message = api.openai_error(got, 400, "invalid_request_error")
    api.contract("POST", "/v1/audio/transcriptions", got)
    assert "multipart" in message, f"a JSON body answered {message!r}, expected a multipart parse error"


@pytest.mark.feature("openai.audio.transcriptions.validation")
@pytest.mark.parametrize(
    ("case", "expected"),
    [("no model", "model is required"), ("no file", "file is required"), ("empty file", "audio file is empty")],
)
def test_transcription_form_is_checked(api: Api, chat_model: str, case: str, expected: str) -> None:
    fields = {} if case == "no model" else {"model": chat_model}
    files = {} if case == "no file" else {"file": b"" if case == "empty file" else _wav()}
    got = _transcribe(api, fields, files)
    message = api.openai_error(got, 400, "invalid_request_error")
    api.contract("POST", "/v1/audio/transcriptions", got)
    assert message.startswith(expected), f"{case}: {message!r}, expected {expected!r}"


@pytest.mark.feature("openai.audio.transcriptions.refused")
def test_transcription_needs_an_audio_model(api: Api, chat_model: str) -> None:
    capabilities = api.target.capabilities(chat_model)
    if capabilities is None or "audio" in capabilities:
        pytest.skip(f"needs a model known to lack the 'audio' capability; {chat_model} has {capabilities}")
    got = _transcribe(api, {"model": chat_model}, {"file": _wav()})
    api.contract("POST", "/v1/audio/transcriptions", got)
    assert 400 <= got.status < 500, (
        f"audio to {chat_model} (no 'audio' capability) answered {got.status}, expected a refusal: {got.text[:200]!r}"
    )


@pytest.mark.feature("openai.audio.transcriptions")
def test_transcription_of_an_audio_model(api: Api, chat_model: str) -> None:
    got = _transcribe(api, {"model": chat_model}, {"file": _wav()})
    if api.target.capabilities(chat_model) is None and (400 <= got.status < 500 or got.status == 501):
        # capabilities unknown and audio refused (a 4xx, or 501 "does not support audio input"): the model most
        # likely has no audio, the precondition of this test, so it does not apply
        text = " ".join(got.text.split())[:120]
        pytest.skip(f"the target does not say whether {chat_model} has the 'audio' capability and refuses audio: "
                    f"POST /v1/audio/transcriptions → {got.status} {text!r}")
    (body,) = api.contract("POST", "/v1/audio/transcriptions", got)
    assert got.status == 200, f"transcription answered {got.status}: {got.text[:200]!r}"
    assert isinstance(body["text"], str)
    text = _transcribe(api, {"model": chat_model, "response_format": "text"}, {"file": _wav()})
    api.contract("POST", "/v1/audio/transcriptions", text)
    assert text.status == 200 and text.media_type == "text/plain", (
        f"response_format text answered {text.status} {text.headers.get('content-type')!r}"
    )
