"""Print pip constraints pinning each runtime dependency of pyproject.toml to its lower bound (``name==lower``).

.ci/run installs the package with them to test the lowest versions it claims to support. torch is left
out: CI installs torch 2.13.0 first (the only build it can fetch without a multi-GB CUDA download).
"""

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)")

dependencies = tomllib.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text())["project"]["dependencies"]
pins = [REQUIREMENT.match(requirement) for requirement in dependencies]
unbounded = [requirement for requirement, pin in zip(dependencies, pins) if pin is None]
if unbounded:
    sys.exit(f"pyproject.toml: no lower bound (>=) in {unbounded}")
print("\n".join(f"{name}=={version}" for name, version in (pin.groups() for pin in pins) if name != "torch"))
