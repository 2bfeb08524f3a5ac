"""Web search and web fetch over a local corpus, for the cloud mode's /api/web_search and /api/web_fetch.

The real service searches the web; this one ranks the pages of `fixtures/web_corpus/` (one Markdown file per page,
with `url:` and `title:` header lines before a `---` line) with BM25, so answers are deterministic and offline.
Request validation returns (status, message) pairs; the HTTP layer turns them into `{"error": message}` bodies.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CORPUS_DIR = Path(str(resources.files("ollama_conformance.fixtures").joinpath("web_corpus")))
DEFAULT_MAX_RESULTS = 5
MAX_RESULTS_LIMIT = 10
SNIPPET_CHARS = 600
MAX_QUERY_CHARS = 2000

_TOKEN = re.compile(r"[a-z0-9]+")
_LINK = re.compile(r"\]\((https?://[^)\s]+)\)")
_BM25_K1 = 1.2
_BM25_B = 0.75
# Query words that carry no topic: without this, "what is ollama?" would match every page through "is".
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
    }
)


class CorpusError(ValueError):
    """The corpus folder is missing or a page file is malformed (a packaging bug, reported at startup)."""


class WebRequestError(ValueError):
    """Bad input to web search or fetch: `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    content: str
    links: tuple[str, ...]
    terms: Counter[str] = field(compare=False, hash=False)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def canonical_url(raw: str) -> str:
    """The key a URL is looked up by: scheme defaulted to https and dropped, host lower-cased, no trailing slash."""
    raw = raw.strip()
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    path = parts.path.rstrip("/")
    return urlunsplit(("", (parts.hostname or "").lower(), path, parts.query, "")).lstrip("/")


def parse_page(text: str, source: str) -> Page:
    header, sep, body = text.partition("\n---\n")
    if not sep:
        raise CorpusError(f"{source}: no '---' line after the header")
    meta: dict[str, str] = {}
    for line in header.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            meta[key.strip().lower()] = value.strip()
    if not meta.get("url") or not meta.get("title"):
        raise CorpusError(f"{source}: the header needs url: and title: lines")
    content = body.strip()
    links = tuple(dict.fromkeys(_LINK.findall(content)))
    terms = Counter(tokenize(meta["title"] + " " + content))
    return Page(url=meta["url"], title=meta["title"], content=content, links=links, terms=terms)


@dataclass(frozen=True)
class Corpus:
    pages: tuple[Page, ...]

    @classmethod
    def load(cls, directory: Path = CORPUS_DIR) -> Corpus:
        if not directory.is_dir():
            raise CorpusError(f"web corpus not found at {directory}")
        pages = tuple(parse_page(p.read_text(encoding="utf-8"), p.name) for p in sorted(directory.glob("*.md")))
        if not pages:
            raise CorpusError(f"web corpus at {directory} has no pages")
        return cls(pages)

    def search(self, query: str, max_results: int) -> list[Page]:
        """Pages that share at least one term with the query, best BM25 score first (ties: corpus order)."""
        query_terms = set(tokenize(query)) - _STOPWORDS
        n = len(self.pages)
        avg_len = sum(sum(p.terms.values()) for p in self.pages) / n
        scored: list[tuple[float, int, Page]] = []
        for index, page in enumerate(self.pages):
            length = sum(page.terms.values())
            score = 0.0
            for term in query_terms:
                tf = page.terms.get(term, 0)
                if not tf:
                    continue
                df = sum(1 for p in self.pages if term in p.terms)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf * (_BM25_K1 + 1) / (tf + _BM25_K1 * (1 - _BM25_B + _BM25_B * length / avg_len))
            if score > 0:
                scored.append((-score, index, page))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [page for _, _, page in scored[:max_results]]

    def fetch(self, url: str) -> Page | None:
        key = canonical_url(url)
        for page in self.pages:
            if canonical_url(page.url) == key:
                return page
        return None


@lru_cache(maxsize=1)
def default_corpus() -> Corpus:
    return Corpus.load()


def snippet(content: str) -> str:
    return content if len(content) <= SNIPPET_CHARS else content[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "..."


def web_search(corpus: Corpus, body: object) -> dict[str, object]:
    """`{query, max_results?}` -> `{results: [{title, url, content}]}`; bad input raises WebRequestError(400)."""
    if not isinstance(body, dict):
        raise WebRequestError(400, "request body must be a JSON object")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise WebRequestError(400, "query is required")
    if len(query) > MAX_QUERY_CHARS:
        raise WebRequestError(400, f"query must be at most {MAX_QUERY_CHARS} characters")
    max_results = body.get("max_results", DEFAULT_MAX_RESULTS)
    if max_results is None:
        max_results = DEFAULT_MAX_RESULTS
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        raise WebRequestError(400, "max_results must be an integer")
    if not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise WebRequestError(400, f"max_results must be between 1 and {MAX_RESULTS_LIMIT}")
    pages = corpus.search(query, max_results)
    return {"results": [{"title": p.title, "url": p.url, "content": snippet(p.content)} for p in pages]}


def web_fetch(corpus: Corpus, body: object) -> dict[str, object]:
    """`{url}` -> `{title, content, links}`; bad input 400, a page outside the corpus 404."""
    if not isinstance(body, dict):
        raise WebRequestError(400, "request body must be a JSON object")
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise WebRequestError(400, "url is required")
    candidate = url.strip() if "://" in url else "https://" + url.strip()
    try:
        parts = urlsplit(candidate)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise WebRequestError(400, f"invalid url: {url!r}")
    page = corpus.fetch(candidate)
    if page is None:
        raise WebRequestError(404, f"page not found: {url}")
    return {"title": page.title, "content": page.content, "links": list(page.links)}
