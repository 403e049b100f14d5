"""Which code produced an output: the package version plus a hash of its source files."""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path
from types import ModuleType

import aml_pipeline

_PACKAGE = Path(aml_pipeline.__file__).resolve().parent


@functools.cache
def code_version() -> str:
    """``{version}+{sha256 of the package's .py files, first 12 hex digits}``."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{aml_pipeline.__version__}+{digest.hexdigest()[:12]}"


def module_version(*modules: ModuleType) -> str:
    """A code version of the given modules: sha256 of their sources, first 12 hex digits
    (an asset's ``code_version``: it changes exactly when the code it runs changes)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]
