"""The code examples of the Getting started and Serving pages run as they are written, so the docs cannot rot.

Every ```bash and ```python block of those pages is run, in a fresh working directory per page: the page's shell
blocks first, as one script (so a variable set in one block is seen by the next), then its Python blocks in one
namespace. The shell functions of SHELL_PRELUDE stand in for what the test must not do for real (make a venv,
pip install, run this test suite) and give every fit one epoch; everything else runs unchanged, on the embedded
ml-latest-small data.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUN_PAGES = ("getting-started.md", "serving.md")
FENCE = re.compile(r"^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$", re.DOTALL | re.MULTILINE)  # also indented, in a list
TINY = "--trainer.max_epochs 1 --trainer.min_epochs 0"  # after the example's own flags, so it wins

SHELL_PRELUDE = f"""
PYTHON={shlex.quote(sys.executable)}
pip() {{ :; }}  # the test's environment is installed already
python() {{
    case "$1 $2" in
        "-m venv") mkdir -p "$3/bin" && : > "$3/bin/activate" ;;  # `. .venv/bin/activate` then changes nothing
        "-m pytest") ;;  # the suite this test is part of
        "-m negseq.fit") shift 2; "$PYTHON" -m negseq.fit "$@" {TINY} ;;
        *) "$PYTHON" "$@" ;;
    esac
}}
negseq() {{
    if [ "$1" = fit ]; then shift; "$PYTHON" -m negseq fit "$@" {TINY}; else "$PYTHON" -m negseq "$@"; fi
}}
"""


def code_blocks(page: str) -> list[tuple[str, int, str]]:
    """``(language, line, code)`` of each fenced block of ``docs/page``, in page order."""
    text = (DOCS / page).read_text()
    return [(match[2].strip(), text.count("\n", 0, match.start()) + 2, textwrap.dedent(match[3])) for match in FENCE.finditer(text)]


def run_page(page: str, cwd: Path) -> None:
    blocks = code_blocks(page)
    script = "\n".join(f"# {page}:{line}\n{code}" for language, line, code in blocks if language == "bash")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # this checkout's negseq
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        pytest.fail(f"{page}: a shell example failed (exit {result.returncode}):\n{result.stderr[-3000:]}", pytrace=False)
    namespace: dict = {"__name__": "__docs__"}
    for language, line, code in blocks:
        if language == "python":
            padded = "\n" * (line - 1) + code  # a failure's traceback names the page and its line
            exec(compile(padded, str(DOCS / page), "exec"), namespace)


@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_block_is_run(page):
    """Each page has shell and Python examples, and no block of another language that this test would skip."""
    languages = [language for language, _, _ in code_blocks(page)]
    assert "bash" in languages and "python" in languages
    assert set(languages) <= {"bash", "python"}, f"{page}: blocks in {sorted(set(languages))}; only bash and python are run"


@pytest.mark.slow
def test_getting_started_runs(tmp_path, monkeypatch):
    """The two commands (the fit part; the install and the suite are stand-ins) and reading the run directory."""
    monkeypatch.chdir(tmp_path)
    run_page("getting-started.md", tmp_path)
    assert (tmp_path / "runs/first/metrics.json").is_file()


@pytest.mark.slow
def test_serving_runs(tmp_path, monkeypatch):
    """Evaluate, refit on every event, recommend, export; then Recommender and the exported program from Python."""
    monkeypatch.chdir(tmp_path)
    run_page("serving.md", tmp_path)
    for name in ("runs/full/checkpoints/best.ckpt", "recs.parquet", "export/user_encoder.pt2", "export/items.npy"):
        assert (tmp_path / name).is_file(), name
