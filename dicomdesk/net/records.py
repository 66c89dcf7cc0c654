"""Value classes of the network stack without ``dataclasses`` at import time.

The PDUs, their items and the state machine's effects were ``@dataclass`` classes. Each
``@dataclass`` compiles its ``__init__``, ``__repr__`` and ``__eq__`` from source text when
its module is imported, and ``dataclasses`` itself loads ``inspect`` (with ``ast``, ``dis``
and ``tokenize``): together about a third of what importing the network stack cost, paid by
every ``dicomdesk echo`` and ``send`` before its first byte (issue 13). These classes now
write their ``__init__`` by hand (compiled once, into the ``.pyc``) and take what the
decorator generated from the bases here, over the field names they list in ``_fields``:
equality (same class, equal fields, as the generated ``__eq__``), a ``repr`` naming each
field, and for the frozen ones a hash of the fields and no assignment after ``__init__``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    """Equality and ``repr`` over ``_fields``, as ``@dataclass(eq=True)`` gave them.

    Unhashable, like a mutable dataclass with ``eq=True``. ``_repr_fields`` names the
    fields the ``repr`` shows (default: all of them).
    """

    __slots__ = ()

    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = getattr(self, "_repr_fields", self._fields)
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"


class FrozenRecord(Record):
    """A :class:`Record` that cannot change after ``__init__`` (which sets its fields with
    ``object.__setattr__``), hashable by its fields: ``@dataclass(frozen=True)``."""

    __slots__ = ()

    def _assign(self, *values: Any) -> None:
        """Set the fields, in ``_fields`` order, from ``__init__``."""
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")
