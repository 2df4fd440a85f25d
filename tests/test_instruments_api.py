"""The public surface of ``instruments``: what ``__all__`` promises exists, and each module says what it is for."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import instruments
from instruments import errors


def test_every_exported_name_exists() -> None:
    assert len(instruments.__all__) == len(set(instruments.__all__))
    for name in instruments.__all__:
        assert hasattr(instruments, name), name


@pytest.mark.parametrize("module", [m.name for m in pkgutil.iter_modules(instruments.__path__)])
def test_each_module_opens_with_a_docstring_and_declares_all(module: str) -> None:
    loaded = importlib.import_module(f"instruments.{module}")
    assert loaded.__doc__ and loaded.__doc__.strip()
    assert isinstance(getattr(loaded, "__all__", None), list)


def test_error_tree_has_builtin_bases() -> None:
    assert issubclass(errors.InstrumentTimeout, TimeoutError)
    assert issubclass(errors.InstrumentUnreachable, ConnectionError)
    assert issubclass(errors.ProtocolError, ValueError)
    assert issubclass(errors.Unauthorized, PermissionError)
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, errors.InstrumentError), name
    assert isinstance(errors.remote_error("busy", "x"), errors.InstrumentBusy)
    assert type(errors.remote_error("bad_params", "x")) is errors.RemoteError
