"""Blob files by digest: validation before any path is built, streamed atomic writes, verification, resumable parts.

A digest reaches a path only after `blob_name` accepted it as `sha256:<64 hex>` or `sha256-<64 hex>` (Ollama's
manifest.BlobsPath pattern): nothing a client sends can name a file outside the blobs folder (the class of
CVE-2024-37032). A blob is written to a temporary file in the blobs folder while its sha256 is computed and is
renamed into place only when the digest matches, so no partial blob is ever visible under its final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

DIGEST_PATTERN = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
INVALID_DIGEST = "invalid digest format"  # manifest.ErrInvalidDigestFormat
PARTIAL_SUFFIX = "-partial"  # Ollama's download file: <blob>-partial


class DigestError(ValueError):
    """A digest that does not have Ollama's `sha256:<64 hex>` form."""

    def __init__(self) -> None:
        super().__init__(INVALID_DIGEST)


class DigestMismatch(ValueError):
    """Written bytes whose sha256 is not the one announced."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"digest mismatch, expected {expected!r}, got {got!r}")
        self.expected = expected
        self.got = got


def is_valid_digest(digest: str) -> bool:
    return bool(DIGEST_PATTERN.match(digest))


def blob_name(digest: str) -> str:
    """The file name `sha256-<hex>` of a valid digest; raises DigestError for anything else."""
    if not is_valid_digest(digest):
        raise DigestError()
    return "sha256-" + digest[7:]


def canonical(digest: str) -> str:
    """`sha256:<hex>` as Ollama writes digests (the hex as given: Ollama compares digests as strings)."""
    return "sha256:" + blob_name(digest)[7:]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


class BlobWriter:
    """Streams bytes into a temporary file beside the blobs, hashing as it goes; `commit` renames it into place
    when the digest matches (else removes it). Always use as a context manager: an abandoned write leaves nothing."""

    def __init__(self, folder: Path, prefix: str = "sha256-") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=folder)
        self.path = Path(name)
        self.handle = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.hasher.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def commit(self, expected: str | None) -> Path:
        """Moves the file to blobs/sha256-<hex>; DigestMismatch (file removed) when `expected` differs."""
        self.handle.close()
        got = self.digest
        if expected is not None and expected != got:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(expected, got)
        final = self.folder / blob_name(got)
        os.chmod(self.path, 0o644)
        os.replace(self.path, final)
        return final

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)


async def write_stream(folder: Path, chunks: AsyncIterator[bytes], expected: str | None) -> tuple[Path, int]:
    """Writes an async byte stream as a blob; the path and size. DigestMismatch when the bytes differ."""
    with BlobWriter(folder) as writer:
        async for chunk in chunks:
            writer.write(chunk)
        size = writer.size
        return writer.commit(expected), size


def write_bytes(folder: Path, data: bytes) -> tuple[str, int, bool]:
    """Stores bytes as a blob: (digest, size, created) — created is False when the blob was already there."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if (folder / blob_name(digest)).is_file():
        return digest, len(data), False
    with BlobWriter(folder) as writer:
        writer.write(data)
        writer.commit(digest)
    return digest, len(data), True


def read_chunks(path: Path, start: int = 0, end: int | None = None, block: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of a file from `start` to `end` (exclusive), in blocks."""
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            data = handle.read(block if remaining is None else min(block, remaining))
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def partial_path(blob: Path) -> Path:
    """Where a download of this blob keeps the bytes it has so far (resumed by the next pull)."""
    return blob.with_name(blob.name + PARTIAL_SUFFIX)
