"""The SVG badge: `ollama API | MUST 100% · SHOULD 94% · MAY 50%`, in the flat shields.io style.

Percentages are floored, never rounded up: 99.6% of MUST is "MUST 99%", so 100% always means every applicable
MUST test passed. A level with no applicable test is left out.
"""

from __future__ import annotations

import math
from html import escape

from ollama_conformance.vocabulary import LEVELS

LABEL = "ollama API"
GREEN, YELLOW, RED, GREY = "#4c1", "#dfb317", "#e05d44", "#9f9f9f"
# Average advance of an 11 px Verdana glyph, close enough to size the two boxes.
CHAR_WIDTH_PX = 6.8


def percent(rate: float) -> int:
    return math.floor(rate * 100 + 1e-9)


def badge_text(rates: dict[str, float | None], exact: dict[str, float | None] | None = None) -> str:
    """`MUST 100% · SHOULD 94% · MAY 50%`; with exact-grade rates, `compatible MUST 100% · exact MUST 87%`."""
    if exact and rates.get("MUST") is not None and exact.get("MUST") is not None:
        return f"compatible MUST {percent(rates['MUST'])}% · exact MUST {percent(exact['MUST'])}%"
    parts = [f"{level} {percent(rate)}%" for level in LEVELS if (rate := rates.get(level)) is not None]
    return " · ".join(parts) if parts else "no results"


def badge_color(rates: dict[str, float | None]) -> str:
    must = rates.get("MUST")
    if must is None:
        return GREY
    if must >= 1.0:
        return GREEN
    return YELLOW if must >= 0.9 else RED


def _width(text: str) -> int:
    return int(len(text) * CHAR_WIDTH_PX + 12)


def badge_svg(rates: dict[str, float | None], label: str = LABEL, exact: dict[str, float | None] | None = None) -> str:
    message = badge_text(rates, exact)
    color = badge_color(rates)
    lw, mw = _width(label), _width(message)
    total = lw + mw
    title = escape(f"{label}: {message}")
    label_e, message_e = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{color}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{label_e}</text>'
        f'<text x="{lw / 2:.1f}" y="14">{label_e}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{message_e}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="14">{message_e}</text></g></svg>\n'
    )
