"""The daemon's account routes, answered as a signed-out Ollama 0.33 answers them, and the model recommendations.

Ollama asks https://ollama.com about its own ed25519 key: `/api/me` (WhoamiHandler) relays the account, and a
key not connected to any account gets 401 with the `signin_url` that connects it; `/api/signout` and the
deprecated `DELETE /api/user/keys/{encodedKey}` (SignoutHandler, which ignores the path key) get 401
`you are not currently signed in`. This server has no account to be signed in to, so it always answers as a
daemon whose key ollama.com does not know. `/api/experimental/model-recommendations` answers Ollama's built-in
list, as a daemon that has not fetched ollama.com's list does.
"""

from __future__ import annotations

import base64
import secrets
import socket
import struct
from functools import cache
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ollama_conformance.reference_backend.api.wire import json_response

SIGNIN_URL = "https://ollama.com/connect?name={name}&key={key}"
GIGABYTE = 1000 * 1000 * 1000  # Ollama's format.GigaByte

# server/model_recommendations.go defaultModelRecommendations at v0.33.0-rc2 (omitempty fields left out).
DEFAULT_RECOMMENDATIONS: list[dict[str, Any]] = [
    {
        "model": "kimi-k2.6:cloud",
        "description": "State-of-the-art coding, long-horizon execution, and multimodal agent swarm capability",
        "context_length": 262_144,
        "max_output_tokens": 262_144,
    },
    {
        "model": "glm-5.1:cloud",
        "description": "Reasoning and code generation",
        "context_length": 202_752,
        "max_output_tokens": 131_072,
    },
    {
        "model": "qwen3.5:cloud",
        "description": "Reasoning, coding, and agentic tool use with vision",
        "context_length": 262_144,
        "max_output_tokens": 32_768,
    },
    {
        "model": "minimax-m2.7:cloud",
        "description": "Fast, efficient coding and real-world productivity",
        "context_length": 204_800,
        "max_output_tokens": 128_000,
    },
    {"model": "gemma4", "description": "Reasoning and code generation locally", "vram_bytes": 12 * GIGABYTE},
    {
        "model": "qwen3.5",
        "description": "Reasoning, coding, and visual understanding locally",
        "vram_bytes": 14 * GIGABYTE,
    },
]


@cache
def public_key() -> str:
    """This server's public key in authorized_keys form, as auth.GetPublicKey returns Ollama's.

    Only the public half is ever shown (in the sign-in URL) and nothing is signed, so 32 random bytes in the
    ssh-ed25519 wire form stand for the key Ollama generates at first start.
    """
    name = b"ssh-ed25519"
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + secrets.token_bytes(32)
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")


def signin_url() -> str:
    """server/routes.go signinURL: the host name path-escaped, the key base64url without padding."""
    key = base64.urlsafe_b64encode(public_key().encode("utf-8")).decode("ascii").rstrip("=")
    return SIGNIN_URL.format(name=quote(socket.gethostname(), safe=""), key=key)


async def whoami(request: Request) -> Response:
    return json_response({"error": "unauthorized", "signin_url": signin_url()}, status_code=401)


async def signout(request: Request) -> Response:
    return json_response({"error": "you are not currently signed in"}, status_code=401)


async def model_recommendations(request: Request) -> Response:
    return json_response({"recommendations": DEFAULT_RECOMMENDATIONS})


def routes() -> list[Route]:
    return [
        Route("/api/me", whoami, methods=["POST"]),
        Route("/api/signout", signout, methods=["POST"]),
        Route("/api/user/keys/{encodedKey}", signout, methods=["DELETE"]),
        Route("/api/experimental/model-recommendations", model_recommendations, methods=["GET"]),
    ]
