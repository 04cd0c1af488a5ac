"""Output folders appear whole or not at all.

A command writes into a fresh temporary folder beside OUTDIR and renames it into place only when everything
succeeded; an error or Ctrl-C removes the temporary folder (and any parent folders it had to create) and leaves
a previous OUTDIR untouched. The swap holds an exclusive lock on `.OUTDIR.lock` beside OUTDIR, so commands
writing the same OUTDIR at the same time take turns and the last one's folder is what remains, whole. Ctrl-C
and SIGTERM are held back during the swap and the clean-up, so that neither is cut in half, and delivered after
them (the `snnc` command turns SIGTERM into an exception, so that a killed compile cleans up too).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from toolchain.errors import SnncError

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def staged_output(outdir: str | Path):
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise SnncError(f"{outdir}: exists and is not a folder; pass a folder path with -o")
    created = _make_folder(outdir.parent)
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        yield staging
        with _exclusive_lock(outdir), _signals_deferred():
            _swap(staging, outdir)
    except BaseException:
        # Also reached when a Ctrl-C held back during the swap arrives after it: then there is nothing to remove.
        with _signals_deferred():
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):  # not empty: someone else put something there meanwhile
                    folder.rmdir()
        raise


def _make_folder(folder: Path) -> list[Path]:
    """Create `folder` with its missing parents; return the folders created, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _swap(staging: Path, outdir: Path) -> None:
    previous = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
    if outdir.exists():
        os.replace(outdir, previous)
    os.replace(staging, outdir)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def _exclusive_lock(outdir: Path):
    """Held while OUTDIR is swapped; the lock file stays, since deleting it would race with the next holder."""
    with open(outdir.with_name(f".{outdir.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _signals_deferred():
    """Hold Ctrl-C and SIGTERM back until the block is done, then deliver them as the installed handlers would."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers only in the main thread, and only it may change them
        return
    received = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sig in dict.fromkeys(received):
        if callable(previous[sig]):
            previous[sig](sig, None)
        elif previous[sig] == signal.SIG_DFL:
            signal.raise_signal(sig)
