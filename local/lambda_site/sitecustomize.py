"""Loaded at start-up by every local Lambda worker (the gateway puts this folder first on its
PYTHONPATH; see local/packages.py): the third-party packages outside the function's
requirements.txt cannot be imported, as in Lambda, where the function's package holds
nothing else. Each package the function does import is reported once on stderr, as
`lambda-imports: <name>`, so tests can tell a package carried but never imported."""

import os
import sys

_BLOCKED = frozenset(filter(None, os.environ.get("LOCAL_LAMBDA_BLOCKED", "").split(",")))
_CARRIED = frozenset(filter(None, os.environ.get("LOCAL_LAMBDA_PACKAGES", "").split(",")))


class _OnlyItsPackage:
    def find_spec(self, name, path=None, target=None):
        if path is not None:
            return None  # a submodule: its package was allowed already
        if name in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this function's requirements.txt)", name=name)
        if name in _CARRIED:
            sys.stderr.write(f"lambda-imports: {name}\n")
        return None


if _BLOCKED or _CARRIED:
    sys.meta_path.insert(0, _OnlyItsPackage())
