"""A progress bar on stderr for anything slower than a second, silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time


def progress(items, label: str, total: int | None = None):
    total = len(items) if total is None else total
    stream = sys.stderr
    show = stream.isatty()
    start = time.monotonic()
    for done, item in enumerate(items):
        yield item
        elapsed = time.monotonic() - start
        if show and elapsed > 1.0:
            filled = int(30 * (done + 1) / max(total, 1))
            stream.write(f"\r{label:<28} [{'#' * filled}{'.' * (30 - filled)}] {done + 1}/{total} {elapsed:5.1f}s")
            stream.flush()
    if show and time.monotonic() - start > 1.0:
        stream.write("\n")
