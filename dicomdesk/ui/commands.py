"""Equivalent ``dicomdesk`` command lines for what the user did in the window ("Copy as command").

Pure functions so that they can be unit-tested and so that the GUI and the CLI stay in step: the
command printed here must do what the button did. The syntax follows ``dicomdesk/cli.py``; the query
keys are DICOM keywords (PS3.6) or ``gggg,eeee`` tags, as ``operations.find`` accepts.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike

__all__ = [
    "commit_command",
    "echo_command",
    "find_command",
    "get_command",
    "move_command",
    "send_command",
    "serve_command",
    "worklist_command",
]

_PROGRAM = "dicomdesk"


def _association_args(host: str, port: int, calling_aet: str, called_aet: str) -> list[str]:
    """HOST PORT then the two AE titles of the A-ASSOCIATE-RQ (PS3.8 7.1.1.2/7.1.1.3)."""
    return [host, str(int(port)), "--aet", calling_aet, "--aec", called_aet]


def _key_args(keys: Mapping[str, str]) -> list[str]:
    """``-k Keyword=value`` for each identifier attribute, in the order given (PS3.4 C.2.2.1)."""
    args: list[str] = []
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    return args


def _level_args(level: str, model: str | None) -> list[str]:
    args = ["--level", level.upper()]
    if model:
        args += ["--model", model.lower()]
    return args


def echo_command(host: str, port: int, calling_aet: str, called_aet: str) -> str:
    """``dicomdesk echo``: the Verification service (PS3.4 Annex A) against one peer."""
    return shlex.join([_PROGRAM, "echo", *_association_args(host, port, calling_aet, called_aet)])


def send_command(
    host: str,
    port: int,
    paths: Iterable[str | PathLike[str]],
    calling_aet: str,
    called_aet: str,
    options: Iterable[str] = (),
) -> str:
    """``dicomdesk send``: C-STORE (PS3.4 Annex B) of the given files and folders; ``options``
    are further arguments (``--deidentify basic``, ``--set TAG=VALUE``...)."""
    args = [_PROGRAM, "send", host, str(int(port)), *(str(p) for p in paths)]
    args += ["--aet", calling_aet, "--aec", called_aet, *options]
    return shlex.join(args)


def find_command(
    host: str,
    port: int,
    level: str,
    keys: Mapping[str, str],
    calling_aet: str,
    called_aet: str,
    model: str | None = None,
) -> str:
    """``dicomdesk find``: C-FIND (PS3.4 C.4.1) at ``level`` with the identifier ``keys``."""
    args = [_PROGRAM, "find", *_association_args(host, port, calling_aet, called_aet)]
    args += _level_args(level, model) + _key_args(keys)
    return shlex.join(args)


def move_command(
    host: str,
    port: int,
    destination_aet: str,
    level: str,
    keys: Mapping[str, str],
    calling_aet: str,
    called_aet: str,
    model: str | None = None,
) -> str:
    """``dicomdesk move``: C-MOVE (PS3.4 C.4.2) to the Move Destination ``destination_aet``."""
    args = [_PROGRAM, "move", *_association_args(host, port, calling_aet, called_aet)]
    args += ["--dest", destination_aet] + _level_args(level, model) + _key_args(keys)
    return shlex.join(args)


def get_command(
    host: str,
    port: int,
    level: str,
    keys: Mapping[str, str],
    out_dir: str | PathLike[str],
    calling_aet: str,
    called_aet: str,
    model: str | None = None,
) -> str:
    """``dicomdesk get``: C-GET (PS3.4 C.4.3), the objects coming back on the same association."""
    args = [_PROGRAM, "get", *_association_args(host, port, calling_aet, called_aet)]
    args += _level_args(level, model) + _key_args(keys) + ["--out", str(out_dir)]
    return shlex.join(args)


def serve_command(port: int, aet: str, storage_dir: str | PathLike[str],
                  allow: Sequence[str] = ()) -> str:
    """``dicomdesk serve``: the local Storage SCP / Q/R SCP the window runs in-process;
    ``allow`` are the allowed calling AE titles (``--allow`` once each)."""
    args = [_PROGRAM, "serve", "--port", str(int(port)), "--aet", aet, "--storage", str(storage_dir)]
    for entry in allow:
        args += ["--allow", entry]
    return shlex.join(args)


def worklist_command(host: str, port: int, keys: Mapping[str, str], calling_aet: str,
                     called_aet: str) -> str:
    """``dicomdesk worklist``: Modality Worklist C-FIND (PS3.4 K.6) with the matching ``keys``
    (the command puts the Scheduled Procedure Step keys inside their sequence)."""
    args = [_PROGRAM, "worklist", *_association_args(host, port, calling_aet, called_aet)]
    return shlex.join(args + _key_args(keys))


def commit_command(host: str, port: int, paths: Iterable[str | PathLike[str]],
                   calling_aet: str, called_aet: str, listen_port: int = 0) -> str:
    """``dicomdesk commit``: Storage Commitment (PS3.4 J.3) of the files' instances; the
    result may come back on a new association to ``listen_port``."""
    args = [_PROGRAM, "commit", host, str(int(port)), *(str(p) for p in paths)]
    args += ["--aet", calling_aet, "--aec", called_aet, "--port", str(int(listen_port))]
    return shlex.join(args)
