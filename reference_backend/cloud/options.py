"""The `serve` options of cloud mode, apart from what the mode mounts (mount.py imports the server): `serve --help`
must not import PyTorch."""

from __future__ import annotations

from typing import Any


def add_cloud_arguments(parser: Any) -> None:
    """`serve --cloud [--api-keys-file PATH] [--api-key-env NAME]`."""
    group = parser.add_argument_group("cloud mode (behave like https://ollama.com)")
    group.add_argument(
        "--cloud",
        action="store_true",
        help="require Authorization: Bearer <key> on /api and /v1, serve /api/web_search and /api/web_fetch",
    )
    group.add_argument("--api-keys-file", metavar="PATH", help="accepted keys, one per line (# comments)")
    group.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding accepted keys (default OLLAMA_API_KEY)"
    )
