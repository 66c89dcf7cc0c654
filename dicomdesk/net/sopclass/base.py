"""Service building blocks (reference chapter 5): SOP-class tags and message dispatchers.

Each service role is a callable. SCPs are called as ``scp(asce, ctx, msg)`` for every
request received on a context of one of their ``sop_classes``; SCUs as
``scu(asce, ctx, *args)`` once bound by ``AssociationRequester.get_scu``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable


def sop_classes(uids: Iterable[str]) -> Callable:
    """Decorator: add (or extend) the ``sop_classes`` attribute of a service."""
    uid_list = list(uids)

    def wrap(service: Any) -> Any:
        existing = list(getattr(service, "sop_classes", []))
        service.sop_classes = existing + [u for u in uid_list if u not in existing]
        return service

    return wrap


class LazyList(list):
    """A list whose items come from ``load()`` the first time it is used.

    For a service's ``sop_classes`` whose UIDs need a table that is expensive to build
    (every Storage SOP class pydicom knows): importing the service costs nothing, and a
    program that never asks (``dicomdesk send``, which proposes its files' own classes)
    never builds it. Every list method fills it first.
    """

    def __init__(self, load: Callable[[], Iterable[Any]]):
        super().__init__()
        self._load: Callable[[], Iterable[Any]] | None = load

    def _fill(self) -> None:
        load, self._load = self._load, None
        if load is not None:
            list.extend(self, load())

    def __reduce__(self) -> Any:
        self._fill()
        return list, (list(self),)


def _filling(name: str) -> Callable:
    def method(self: LazyList, *args: Any, **kwargs: Any) -> Any:
        self._fill()
        return getattr(list, name)(self, *args, **kwargs)

    method.__name__ = name
    return method


for _name in ("__iter__", "__len__", "__getitem__", "__contains__", "__eq__", "__ne__", "__lt__", "__le__",
              "__gt__", "__ge__", "__add__", "__mul__", "__rmul__", "__repr__", "__reversed__", "__iadd__",
              "__imul__", "__setitem__", "__delitem__", "index", "count", "copy", "append", "extend",
              "insert", "remove", "pop", "sort", "reverse", "clear"):
    setattr(LazyList, _name, _filling(_name))
del _name
LazyList.__hash__ = None  # type: ignore[assignment]  # a list: unhashable


def sop_classes_on_first_use(load: Callable[[], Iterable[str]]) -> Callable:
    """Decorator: like ``sop_classes``, with the UIDs computed on first use (``LazyList``)."""

    def wrap(service: Any) -> Any:
        service.sop_classes = LazyList(load)
        return service

    return wrap


def store_in_file(service: Any) -> Any:
    """Decorator: data sets received for this service go straight to a file (``AE.get_file``)."""
    service.store_in_file = True
    return service


# DIMSE command field → method name used by the dispatchers (PS3.7 E.1).
_METHOD_NAMES = {
    0x0001: "c_store", 0x8001: "c_store",
    0x0010: "c_get", 0x8010: "c_get",
    0x0020: "c_find", 0x8020: "c_find",
    0x0021: "c_move", 0x8021: "c_move",
    0x0030: "c_echo", 0x8030: "c_echo",
    0x0FFF: "c_cancel",
    0x0100: "n_event_report", 0x8100: "n_event_report",
    0x0110: "n_get", 0x8110: "n_get",
    0x0120: "n_set", 0x8120: "n_set",
    0x0130: "n_action", 0x8130: "n_action",
    0x0140: "n_create", 0x8140: "n_create",
    0x0150: "n_delete", 0x8150: "n_delete",
}


class MessageDispatcher:
    """Selects the method named after a message's DIMSE command (``n_action``, ``c_find`` …)."""

    def get_method(self, msg: Any) -> Callable:
        field = getattr(msg, "command_field", None)
        name = _METHOD_NAMES.get(field) if field is not None else None
        method = getattr(self, name, None) if name else None
        if method is None:
            raise NotImplementedError(f"{type(self).__name__} does not handle {type(msg).__name__}")
        return method


class MessageDispatcherSCU(MessageDispatcher):
    """Called with a message (instance or class) as third argument: forwards to its method."""

    def __call__(self, asce: Any, ctx: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
        return self.get_method(msg)(asce, ctx, *args, **kwargs)


class MessageDispatcherSCP(MessageDispatcher):
    """Dispatches each received request to the method for its command."""

    def __call__(self, asce: Any, ctx: Any, msg: Any) -> Any:
        return self.get_method(msg)(asce, ctx, msg)
