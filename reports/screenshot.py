"""Take a screenshot of an HTML report in headless Chromium (Debian's `chromium`): proof that it renders offline.

    python -m reports.screenshot REPORT.html OUT.png [--width 1280 --height 2400]

Network is cut off by flags (no background networking, no component updates), so a report that needed the
network would show it. Exit 0 with the PNG written, 2 on bad input, 3 when no Chromium can be found or it fails.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ScreenshotError(Exception):
    pass


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ValueError if the bytes are not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def screenshot(html: Path, out: Path, width: int = 1280, height: int = 2400, timeout_s: float = 60.0) -> Path:
    chromium = find_chromium()
    if chromium is None:
        raise ScreenshotError("no Chromium found (Debian: apt-get install -y chromium)")
    if not html.is_file():
        raise FileNotFoundError(html)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ollama-conformance-chromium-") as profile:
        cmd = [
            chromium,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            html.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ScreenshotError(f"chromium did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(proc.stderr.splitlines()[-5:])
        raise ScreenshotError(f"chromium exited with {proc.returncode} and no screenshot:\n{tail}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.html, args.out, args.width, args.height)
    except FileNotFoundError:
        print(f"error: {args.html} does not exist", file=sys.stderr)
        return 2
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    w, h = png_size(path.read_bytes())
    print(f"wrote {path} ({w}x{h})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
