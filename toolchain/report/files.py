"""Writing a compile's report files, and `snnc report`: re-rendering report.md and report.html from report.json."""

from __future__ import annotations

import json
from pathlib import Path

from toolchain.errors import SnncError
from toolchain.report.html import html
from toolchain.report.render import markdown

REQUIRED_KEYS = ("neuron", "timesteps", "model", "data", "versions", "notes", "ann", "layers", "targets")


def write_reports(folder: Path, report: dict) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    render_reports(folder, report)


def render_reports(folder: Path, report: dict) -> None:
    (folder / "report.md").write_text(markdown(report))
    (folder / "report.html").write_text(html(report))


def rerender(outdir: str) -> list[Path]:
    """Render OUTDIR/report.md and OUTDIR/report.html again from OUTDIR/report.json; return the files written."""
    folder = Path(outdir)
    source = folder / "report.json"
    try:
        report = json.loads(source.read_text())
    except FileNotFoundError:
        raise SnncError(f"{source} does not exist; pass the output folder of `snnc compile`")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SnncError(f"{source} is not readable JSON ({type(err).__name__}: {err}); compile again to rewrite it")
    missing = [key for key in REQUIRED_KEYS if key not in report] if isinstance(report, dict) else list(REQUIRED_KEYS)
    if missing:
        raise SnncError(f"{source} is not a report of `snnc compile` (it lacks {', '.join(missing)}); "
                        "`snnc report` re-renders compile reports")
    try:
        render_reports(folder, report)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise SnncError(f"{source} has an entry snnc cannot render ({type(err).__name__}: {err}); compile again to rewrite it")
    return [folder / "report.md", folder / "report.html"]
