"""Old import paths that still work: a module whose names moved gets ``__getattr__ = moved(__name__, {name: new module})``,
so that ``from old import name`` returns the object from its new home with a one-line DeprecationWarning naming it
(CHANGELOG.md lists each move). A leaf module: it imports nothing of negseq."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``module`` for the ``names`` that moved (name -> the module that has it now)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated: import it from {names[name]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
