"""Compiled code of the workflow modules, kept in memory: the Temporal sandbox re-imports a
workflow's module (and the helper modules it imports outside `imports_passed_through`) for every new
workflow run, so that no state leaks between runs.

Python reads those re-imports' bytecode from `__pycache__`, but with PYTHONDONTWRITEBYTECODE (the
image sets it) no `.pyc` is ever written, and each re-import compiled workflows/cpo.py and its
helpers from source: ~20 ms of a worker's CPU per tiny CPO (its run and its pod's run), py-spy under
bench/bench_cost.py. A finder for the `workflows` package alone hands the import system a loader that
compiles each file once per process. Every import still executes the module afresh (a new module
object per sandbox); only the immutable code object is shared. Nothing is written to disk.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

PACKAGE = "workflows"


class _CompiledOnce(importlib.machinery.SourceFileLoader):
    codes: dict[tuple[str, float, int], CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        st = self.path_stats(self.path)  # an edited file (mtime or size) compiles again
        key = (self.path, st["mtime"], st["size"])
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = super().get_code(fullname)  # type: ignore[assignment]
        return code


class _WorkflowModules(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _CompiledOnce(spec.loader.name, spec.loader.path)
        return spec


def cache_workflow_code() -> bool:
    """Install the finder (idempotent). Returns False when Python caches bytecode on disk anyway."""
    if not sys.dont_write_bytecode:
        return False
    if not any(isinstance(f, _WorkflowModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _WorkflowModules())
    return True
