"""Output folders appear whole or not at all.

A command writes into a fresh temporary folder beside OUTDIR and renames it into place only when everything
succeeded; an error or Ctrl-C removes the temporary folder and leaves any previous OUTDIR untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def staged_output(outdir: str | Path):
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
    if outdir.exists():
        os.replace(outdir, previous)
    os.replace(staging, outdir)
    shutil.rmtree(previous, ignore_errors=True)
