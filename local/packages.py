"""Each local Lambda worker sees only its function's packages, as in Lambda.

The local stack runs every function from the one development environment, where all of
them are installed. `only_its_packages` gives a worker's environment what makes the others
unimportable (local/lambda_site/sitecustomize.py, loaded at its start-up): a function that
imports something its requirements.txt does not carry fails locally as it would in AWS.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

SITE = Path(__file__).resolve().parent / "lambda_site"


def _name(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(".", "-")


@lru_cache(maxsize=1)
def _modules_by_distribution() -> dict[str, set[str]]:
    from importlib.metadata import packages_distributions

    found: dict[str, set[str]] = {}
    for module, distributions in packages_distributions().items():
        if module.isidentifier():
            for distribution in distributions:
                found.setdefault(_name(distribution), set()).add(module)
    return found


def pinned(path: str | os.PathLike[str]) -> set[str]:
    """The distributions a requirements file names (normalised), none if it does not exist."""
    path = Path(path)
    if not path.exists():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {_name(line.split("==", 1)[0]) for line in lines if line}


def only_its_packages(code_uri: str | os.PathLike[str], pythonpath: str | None) -> dict[str, str]:
    """Environment variables that confine a worker of the function at `code_uri` to the
    packages of its requirements.txt (none when it has none)."""
    carried = pinned(Path(code_uri) / "requirements.txt")
    if not carried:
        return {}
    modules = _modules_by_distribution()
    allowed = set().union(*(modules.get(name, set()) for name in carried))
    blocked = set().union(*modules.values()) - allowed
    return {
        "LOCAL_LAMBDA_BLOCKED": ",".join(sorted(blocked)),
        "LOCAL_LAMBDA_PACKAGES": ",".join(sorted(allowed)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), pythonpath])),
    }
