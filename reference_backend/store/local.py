"""The model store, in Ollama's layout: `manifests/<host>/<namespace>/<model>/<tag>` and `blobs/sha256-<hex>`.

A manifest is an OCI/Docker image manifest whose config blob describes the model (format, family, type, file
type) and whose layers are the weights (`application/vnd.ollama.image.model`), the template, the parameters,
the system prompt and the license. A model's digest is the sha256 of its manifest's bytes. Copy writes a second
manifest; delete removes a manifest and then only the blobs no remaining manifest refers to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ollama_conformance.reference_backend.store.model_cache import file_lock
from ollama_conformance.reference_backend.store.names import ModelName, parse_name

log = logging.getLogger("ollama_conformance.reference_backend.store")

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"


@dataclass
class ModelEntry:
    name: ModelName
    manifest_path: Path
    manifest: dict[str, Any]
    digest: str  # sha256 hex of the manifest bytes
    modified_at: datetime
    config: dict[str, Any]

    @property
    def size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in self.manifest.get("layers", [])) + int(
            self.manifest.get("config", {}).get("size", 0)
        )

    def layer(self, media_type: str) -> dict[str, Any] | None:
        for layer in self.manifest.get("layers", []):
            if layer.get("mediaType") == media_type:
                return layer
        return None

    @property
    def model_digest(self) -> str | None:
        layer = self.layer(MEDIA_MODEL)
        return layer["digest"].split(":", 1)[1] if layer else None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "manifests"
        self.blobs = root / "blobs"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # --- blobs ----------------------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.split(":", 1)[-1].split("-", 1)[-1]
        return self.blobs / f"sha256-{hexdigest}"

    def put_bytes(self, data: bytes) -> dict[str, Any]:
        hexdigest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(hexdigest)
        if not path.exists():
            self._atomic_write(path, data)
        return {"digest": f"sha256:{hexdigest}", "size": len(data)}

    def put_file(self, source: Path, hexdigest: str) -> dict[str, Any]:
        """Adds a file whose sha256 is known, as a hard link where possible (the GGUF is 240 MB)."""
        path = self.blob_path(hexdigest)
        if not path.exists():
            tmp = path.with_name(path.name + f".{os.getpid()}.partial")
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        return {"digest": f"sha256:{hexdigest}", "size": path.stat().st_size}

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    # --- manifests ------------------------------------------------------------------------------------------
    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests / name.host / name.namespace / name.model / name.tag

    def write_manifest(self, name: ModelName, config_layer: dict[str, Any], layers: list[dict[str, Any]]) -> bool:
        """Writes the manifest unless an identical one is there (keeps modified_at); True when written."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, **config_layer},
            "layers": layers,
        }
        data = json.dumps(manifest).encode()
        path = self.manifest_path(name)
        with self.lock:
            if path.is_file() and path.read_bytes() == data:
                return False
            self._atomic_write(path, data)
            log.info("wrote manifest %s", name.display)
            return True

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Serializes changes to the store across processes (several servers may share one store)."""
        with self.lock, file_lock(self.root / ".lock"):
            yield

    def list(self) -> list[ModelEntry]:
        entries = []
        with self.lock:
            for path in self.manifests.glob("*/*/*/*"):
                if not path.is_file() or path.name.endswith(".partial"):
                    continue
                host, namespace, model, tag = path.relative_to(self.manifests).parts
                entry = self._load(ModelName(host, namespace, model, tag), path)
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: e.modified_at, reverse=True)
        return entries

    def get(self, name: str | ModelName) -> ModelEntry | None:
        parsed = parse_name(name) if isinstance(name, str) else name
        if parsed is None:
            return None
        path = self.manifest_path(parsed)
        if not path.is_file():  # names are case-insensitive
            for entry in self.list():
                if entry.name.key() == parsed.key():
                    return entry
            return None
        return self._load(parsed, path)

    def copy(self, source: ModelEntry, destination: ModelName) -> None:
        with self.exclusive():
            self._atomic_write(self.manifest_path(destination), source.manifest_path.read_bytes())

    def delete(self, entry: ModelEntry) -> None:
        with self.exclusive():
            entry.manifest_path.unlink(missing_ok=True)
            for parent in entry.manifest_path.parents:  # drop empty model/namespace/host folders
                if parent == self.manifests:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
            # Ollama's RemoveLayers: only this manifest's blobs, and only those no other manifest uses (a blob
            # uploaded for a later create stays)
            layers = [entry.manifest.get("config", {}), *entry.manifest.get("layers", [])]
            self.remove_unused({layer["digest"] for layer in layers if layer.get("digest")})

    def write_manifest_bytes(self, name: ModelName, data: bytes) -> None:
        """Writes a manifest exactly as given (a pulled one keeps the registry's bytes, hence its digest)."""
        with self.exclusive():
            self._atomic_write(self.manifest_path(name), data)

    def remove_unused(self, digests: set[str]) -> None:
        """Removes those of these blobs that no manifest refers to."""
        used: set[str] = set()
        for entry in self.list():
            used.add(entry.manifest.get("config", {}).get("digest", ""))
            used.update(layer.get("digest", "") for layer in entry.manifest.get("layers", []))
        for digest in digests - used:
            self.blob_path(digest).unlink(missing_ok=True)

    def prune_blobs(self) -> None:
        """Removes every blob that no manifest refers to."""
        used: set[str] = set()
        for entry in self.list():
            used.add(self.blob_path(entry.manifest["config"]["digest"]).name)
            for layer in entry.manifest.get("layers", []):
                used.add(self.blob_path(layer["digest"]).name)
        for blob in self.blobs.iterdir():
            if blob.name.startswith("sha256-") and blob.name not in used and not blob.name.endswith("partial"):
                blob.unlink(missing_ok=True)

    def _load(self, name: ModelName, path: Path) -> ModelEntry | None:
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
            config = json.loads(self.read_blob(manifest["config"]["digest"]))
        except (OSError, ValueError, KeyError):
            return None
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        return ModelEntry(name, path, manifest, hashlib.sha256(raw).hexdigest(), modified, config)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
