"""The `clients` section of check results (official clients' scripted probes), as every report shows it:
"ollama-python 0.6.3: 11/12", then each failure with the client call that broke and the client's exception."""

from __future__ import annotations

from typing import Any


def client_headline(client: dict[str, Any]) -> str:
    name = f"{client.get('client') or '?'} {client.get('version') or ''}".strip()
    state = client.get("state")
    if state != "ran":
        return f"{name}: {str(state or 'unknown').replace('_', ' ')} ({client.get('reason') or 'no reason given'})"
    return f"{name}: {client.get('passed', 0)}/{client.get('total', 0)}"


def client_failures(client: dict[str, Any]) -> list[str]:
    return [
        f"{s.get('name')}: {s.get('step') or '?'} → {s.get('exception') or 'failed'}"
        for s in client.get("scenarios") or []
        if isinstance(s, dict) and s.get("status") != "pass"
    ]


def clients_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in raw.get("clients") or [] if isinstance(c, dict)]
