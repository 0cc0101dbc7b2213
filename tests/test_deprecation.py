"""Old import paths keep working: each gives the object from its new home with one DeprecationWarning naming it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from negseq.deprecation import MODULES_MOVED


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("negseq.objectives", "SignSeparated", "negseq.models.families.sign_separated"),  # names moved in 0.3.0
        ("negseq.serving", "checkpoint_path", "negseq.training.checkpoints"),
        ("negseq.selection", "load_weights", "negseq.training.checkpoints"),
        ("negseq.results", "best_epoch", "negseq.training.checkpoints"),
        ("negseq.data.splits", "item_codes", "negseq.data.ids"),
        ("negseq.module", "NegSeqModule", "negseq.training.module"),  # modules moved into the layers' packages in 0.4.0
        ("negseq.paired", "pooled", "negseq.studies.paired"),
        ("negseq.serving", "histories_frame", "negseq.serving.histories"),  # the old serving module's names, from the package
        ("negseq.compare", "load_per_user", "negseq.studies.compare"),  # entry points keep their module's old names
        ("negseq.experiments", "results_table", "negseq.studies.runner"),
        ("negseq.synthetic", "generate", "negseq.studies.synthetic"),
    ],
)
def test_a_moved_name_imports_from_its_old_path_with_a_warning_naming_the_new_one(old, name, new):
    with pytest.warns(DeprecationWarning, match=f"^{old}.{name} is deprecated: import it from {new}$"):
        moved = getattr(importlib.import_module(old), name)
    assert moved is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match=f"module '{old}' has no attribute 'never_there'"):
        getattr(importlib.import_module(old), "never_there")


@pytest.mark.parametrize("old", sorted(name for name, new in MODULES_MOVED.items() if new))
def test_every_moved_module_forwards_its_public_names(old):
    new = importlib.import_module(MODULES_MOVED[old])
    public = [name for name in vars(new) if not name.startswith("_") and getattr(vars(new)[name], "__module__", None) == new.__name__]
    assert public, f"{new.__name__} defines nothing public"
    stand_in = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"import it from {new.__name__}$"):
        assert all(getattr(stand_in, name) is getattr(new, name) for name in public)


def test_the_old_paths_never_hide_a_real_module_and_the_new_paths_do_not_warn():
    """The old names are looked up after every real module, and a program on the new paths sees no warning."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import negseq, negseq.training.module, negseq.studies.paired, negseq.serving\n"
        "from negseq import Recommender\n"
        "from negseq.serving import Recommender as R\n"
        "assert R is Recommender and negseq.training.module.__spec__.name == 'negseq.training.module'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
