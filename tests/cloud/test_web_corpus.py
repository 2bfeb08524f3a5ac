"""Web search and fetch over the shipped corpus: request contract, ranking, limits and errors."""

from __future__ import annotations

import pytest

from ollama_conformance.reference_backend.cloud.web_corpus import (
    CORPUS_DIR,
    Corpus,
    CorpusError,
    WebRequestError,
    canonical_url,
    default_corpus,
    parse_page,
    web_fetch,
    web_search,
)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return default_corpus()


def test_corpus_pages_are_well_formed(corpus: Corpus) -> None:
    assert len(corpus.pages) == len(list(CORPUS_DIR.glob("*.md"))) >= 10
    urls = [canonical_url(p.url) for p in corpus.pages]
    assert len(set(urls)) == len(urls)
    for page in corpus.pages:
        assert page.title and page.content and page.url.startswith("https://")
        assert all(link.startswith(("http://", "https://")) for link in page.links)


def test_search_shape_and_default_count(corpus: Corpus) -> None:
    answer = web_search(corpus, {"query": "ollama api"})
    assert set(answer) == {"results"}
    assert 1 <= len(answer["results"]) <= 5  # type: ignore[arg-type]
    for result in answer["results"]:  # type: ignore[union-attr]
        assert set(result) == {"title", "url", "content"}
        assert all(isinstance(v, str) and v for v in result.values())


def test_search_ranks_the_matching_page_first(corpus: Corpus) -> None:
    results = web_search(corpus, {"query": "Why is the sky blue?", "max_results": 10})["results"]
    assert results[0]["url"] == "https://corpus.example/physics/rayleigh-scattering"  # type: ignore[index]


@pytest.mark.parametrize("limit", [1, 2, 10])
def test_search_respects_max_results(corpus: Corpus, limit: int) -> None:
    assert len(web_search(corpus, {"query": "ollama http json stream model", "max_results": limit})["results"]) == limit  # type: ignore[arg-type]


def test_search_without_match_is_empty(corpus: Corpus) -> None:
    assert web_search(corpus, {"query": "zyzzyva quux"}) == {"results": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ({}, "query is required"),
        ({"query": "   "}, "query is required"),
        ({"query": 3}, "query is required"),
        ({"query": "x", "max_results": 0}, "max_results must be between 1 and 10"),
        ({"query": "x", "max_results": 11}, "max_results must be between 1 and 10"),
        ({"query": "x", "max_results": "3"}, "max_results must be an integer"),
        ({"query": "x", "max_results": True}, "max_results must be an integer"),
        ({"query": "x" * 2001}, "query must be at most 2000 characters"),
    ],
)
def test_search_bad_input(corpus: Corpus, body: object, message: str) -> None:
    with pytest.raises(WebRequestError) as info:
        web_search(corpus, body)
    assert (info.value.status, info.value.message) == (400, message)


@pytest.mark.parametrize("url", ["https://ollama.com", "ollama.com", "http://OLLAMA.com/", "https://ollama.com/"])
def test_fetch_finds_a_page_by_any_spelling_of_its_url(corpus: Corpus, url: str) -> None:
    page = web_fetch(corpus, {"url": url})
    assert set(page) == {"title", "content", "links"}
    assert page["title"] == "Ollama"
    assert "https://github.com/ollama/ollama" in page["links"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "url is required"),
        ({"url": ""}, 400, "url is required"),
        ({"url": "ftp://ollama.com"}, 400, "invalid url: 'ftp://ollama.com'"),
        ({"url": "https://nowhere.example/page"}, 404, "page not found: https://nowhere.example/page"),
    ],
)
def test_fetch_bad_input(corpus: Corpus, body: object, status: int, message: str) -> None:
    with pytest.raises(WebRequestError) as info:
        web_fetch(corpus, body)
    assert (info.value.status, info.value.message) == (status, message)


def test_malformed_page_and_missing_corpus_are_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CorpusError, match="no '---' line"):
        parse_page("url: https://a.example\ntitle: A\nno separator", "a.md")
    with pytest.raises(CorpusError, match="needs url: and title:"):
        parse_page("title: A\n---\nbody", "a.md")
    with pytest.raises(CorpusError, match="not found"):
        Corpus.load(tmp_path / "absent")
    with pytest.raises(CorpusError, match="has no pages"):
        Corpus.load(tmp_path)
