"""Old import paths that still work, each with a one-line DeprecationWarning naming the new one (CHANGELOG.md lists
every move).

Two kinds of move: a whole module that moved into a layer's sub-package (0.4.0: ``negseq.module`` is
``negseq.training.module``), answered by an import hook that gives the old name a stand-in module forwarding every
attribute to the new one; and single names that moved to another module (0.3.0: ``negseq.objectives.SignSeparated``),
answered by the stand-in (or the old module's ``__getattr__``, :func:`moved`) looking each name up where it lives now.
A leaf module: it imports nothing of negseq.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

# old module -> the module that holds its code now (None: the old module's names went to several, see NAMES_MOVED)
MODULES_MOVED: dict[str, str | None] = {
    **{f"negseq.{old}": f"negseq.training.{old}" for old in (
        "allocator", "callbacks", "checkpoints", "cli", "job", "module", "results", "selection", "tracking")},
    **{f"negseq.{old}": f"negseq.models.{old}" for old in ("inference", "losses", "ranking", "ranking_weights")},
    **{f"negseq.{old}": f"negseq.evaluation.{old}" for old in ("metrics", "responsiveness")},
    **{f"negseq.{old}": f"negseq.serving.{old}" for old in ("commands", "export", "histories")},
    **{f"negseq.{old}": f"negseq.studies.{old}" for old in ("frontier", "paired")},
    "negseq.objectives": None,
}
# old module -> {name: the module that has it now}, for names that left the module they were in
NAMES_MOVED: dict[str, dict[str, str]] = {
    "negseq.objectives": {
        "shift": "negseq.models.families.base",
        **dict.fromkeys(
            ("SignSeparated", "ContrastNegatives", "state_before", "scale_gradient", "hard_negative_log_mass"),
            "negseq.models.families.sign_separated",
        ),
        "WholeHistory": "negseq.models.families.whole_history",
        "SignedHistory": "negseq.models.families.signed",
    },
    "negseq.results": {"best_epoch": "negseq.training.checkpoints"},
    "negseq.selection": {"load_weights": "negseq.training.checkpoints"},
    "negseq.serving": {"checkpoint_path": "negseq.training.checkpoints"},
}


def moved(module: str, names: dict[str, str], rest: str | None = None) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``module``: each of ``names`` (name -> the module that has it now), and any
    other name of ``rest`` (the module the old one's code moved to), comes from its new home with a warning naming it."""

    missing = object()

    def __getattr__(name: str) -> Any:
        home = names.get(name, rest)
        value = getattr(importlib.import_module(home), name, missing) if home and not name.startswith("__") else missing
        if value is missing:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        defined_in = getattr(value, "__module__", None)  # a class's or function's own module, if the new home re-exports it
        home = defined_in if isinstance(defined_in, str) and defined_in.startswith("negseq.") else home
        warnings.warn(f"{module}.{name} is deprecated: import it from {home}", DeprecationWarning, stacklevel=2)
        return value

    return __getattr__


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the modules of :data:`MODULES_MOVED` by their old names (after every real module: a real one always wins)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MODULES_MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # a fresh module: the stand-in

    def exec_module(self, module: types.ModuleType) -> None:
        module.__getattr__ = moved(module.__name__, NAMES_MOVED.get(module.__name__, {}), MODULES_MOVED[module.__name__])


def install() -> None:
    """Answer the old module paths (once per process; ``import negseq`` calls it)."""
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(OldPaths())
