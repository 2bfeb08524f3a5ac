"""The converted-model cache under concurrency: several processes starting at once convert once, atomically.

The conversion step itself is replaced by a slow stand-in here (the real one, a minute and 3 GB, runs on the
first start of every machine and is checked tensor by tensor in test_gemma3_engine.py); what is tested is the
locking, the temporary folder and the rename.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, time
from pathlib import Path
from ollama_conformance.reference_backend.store import model_cache

def slow_convert(gguf_path, out_dir):
    with open(sys.argv[2], "a") as log:
        log.write("converted\\n")
    time.sleep(1.0)
    (out_dir / "model.safetensors").write_text("weights")

model_cache.convert_gguf = slow_convert
print(model_cache.ensure_converted(Path(sys.argv[1]), "ab" * 32))
"""


def test_concurrent_starts_convert_once(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    calls = tmp_path / "calls.log"
    env = {**os.environ, "OLLAMA_CONFORMANCE_CACHE": str(tmp_path / "cache")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(gguf), str(calls)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert len(set(outputs)) == 1
    folder = Path(outputs[0])
    assert calls.read_text().count("converted") == 1
    assert (folder / "converted.ok").read_text().strip() == "ab" * 32
    assert (folder / "model.safetensors").read_text() == "weights"
    leftovers = [p.name for p in folder.parent.iterdir() if p.is_dir() and p != folder]
    assert leftovers == []


def test_interrupted_conversion_leaves_nothing(tmp_path: Path) -> None:
    script = SCRIPT.replace('(out_dir / "model.safetensors").write_text("weights")', 'raise RuntimeError("boom")')
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    env = {**os.environ, "OLLAMA_CONFORMANCE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(gguf), str(tmp_path / "calls.log")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "boom" in result.stderr
    converted = tmp_path / "cache" / "converted"
    assert [p for p in converted.iterdir() if p.is_dir()] == []
