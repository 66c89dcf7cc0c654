"""Every name ``dicomdesk.operations`` exports is the function or class, whatever was imported first."""

from __future__ import annotations

import importlib
import pkgutil

import dicomdesk.operations as operations


def test_importing_every_submodule_does_not_shadow_an_exported_name():
    for info in pkgutil.iter_modules(operations.__path__):
        importlib.import_module(f"dicomdesk.operations.{info.name}")
    for name, module in operations._EXPORTS.items():
        value = getattr(operations, name)
        assert not isinstance(value, type(operations)), f"operations.{name} is a module"
        assert value is getattr(importlib.import_module(f"dicomdesk.operations.{module}"), name)
