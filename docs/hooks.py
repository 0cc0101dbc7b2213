"""MkDocs hooks: the repository's result files, benchmarks, changelog and licences become part of the site, at their own paths;
the API reference shows the docstrings' Sphinx roles as plain code.

experiments/*.md, benchmarks/README.md and the files they link to (CSV, YAML, scripts, notebooks) stay where they
are and are edited there; the pages link to them as ``experiments/QUALITY.md`` and so on, so ``mkdocs build
--strict`` checks each of those links, and their own relative links, as it checks the pages' own.
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

PUBLISHED = ("experiments", "benchmarks", "notebooks", "CHANGELOG.md", "LICENSE", "negseq/data/ml_latest_small/README.txt")
SKIPPED = {"runs", "__pycache__", ".ipynb_checkpoints"}  # run outputs and caches (git-ignored) stay out
ROLE = re.compile(r":(?:class|mod|func|meth|attr|data|exc|obj):(?=<code>)")  # docstrings write :class:`Catalog`


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for name in PUBLISHED:
        top = root / name
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            relative = path.relative_to(root)
            if path.is_file() and path.suffix != ".parquet" and not SKIPPED & set(relative.parts):
                files.append(File.generated(config, relative.as_posix(), abs_src_path=str(path)))
    return files


def on_page_content(html, page, config, files):
    return ROLE.sub("", html)
