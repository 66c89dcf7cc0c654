"""``dicomdesk`` command line: one sub-command per thing the window does.

Each sub-command lives in ``dicomdesk/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``; only the chosen command's module (and what it needs) is imported,
so ``dicomdesk echo`` starts fast. With no sub-command, ``dicomdesk`` opens the window.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

#: Sub-command name → module under dicomdesk.commands, in help order.
COMMANDS = {
    "echo": "echo",
    "send": "send",
    "find": "query",
    "get": "query",
    "move": "query",
    "worklist": "worklist",
    "commit": "commit",
    "serve": "serve",
    "index": "index",
    "diagnose": "diagnose",
}

#: Commands whose process ends as soon as their work is printed (see ``_end_process``):
#: they leave no file open for writing and no thread behind.
QUICK_EXIT_COMMANDS = frozenset({"echo", "send", "find"})

#: DCMTK spells some long options with one dash; accept those as typed.
DCMTK_ALIASES = {"-aet": "--aet", "-aec": "--aec", "-aem": "--dest"}


def _normalise(argv: list[str]) -> list[str]:
    return [DCMTK_ALIASES.get(arg, arg) for arg in argv]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only`` just that sub-command's module is imported."""
    parser = argparse.ArgumentParser(prog="dicomdesk", description="DICOM network client and server.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        if module_name in seen:
            continue
        try:
            module = importlib.import_module(f"dicomdesk.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"dicomdesk.commands.{module_name}":
                continue  # command not available in this build
            raise
        module.add_parser(subparsers)
        seen.add(module_name)
    return parser


def _chosen_command(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (and the bz2/lzma
    modules it loads): argparse makes a help formatter for every ``add_argument``."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, its width found as ``shutil.get_terminal_size`` finds it."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


class _SingleCommand:
    """Stands in for argparse's sub-parsers so a command's parser can be used on its own:
    argparse cannot mix options and positionals (``send HOST PORT --aec X PATH``) with
    sub-parsers, but a plain parser can (``parse_intermixed_args``)."""

    def __init__(self) -> None:
        self.parsers: dict[str, argparse.ArgumentParser] = {}

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.pop("help", None)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        parser = argparse.ArgumentParser(prog=f"dicomdesk {name}", **kwargs)
        parser.add_argument("-v", "--verbose", action="count", default=0,
                            help="more log output (-vv: debug)")
        self.parsers[name] = parser
        return parser


def _command_parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"dicomdesk.commands.{COMMANDS[command]}")
    single = _SingleCommand()
    module.add_parser(single)
    return single.parsers[command]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dicomdesk`` console script; returns the exit status."""
    args_list = _normalise(list(sys.argv[1:] if argv is None else argv))
    command = _chosen_command(args_list)
    if command is None:
        if any(a in ("-h", "--help") for a in args_list):
            build_parser().print_help()
            return 0
        if args_list and not args_list[0].startswith("-"):
            print(f"dicomdesk: unknown command {args_list[0]!r} "
                  f"(try one of: {', '.join(COMMANDS)})", file=sys.stderr)
            return 2
        from .ui.app import main as gui_main  # the window is the default
        return gui_main([a for a in args_list if a not in ("-v", "--verbose", "-vv")])
    position = args_list.index(command)
    rest = args_list[:position] + args_list[position + 1:]
    args = _command_parser(command).parse_intermixed_args(rest)
    status = _run(command, args)
    if argv is None and command in QUICK_EXIT_COMMANDS:
        _end_process(status)
    return status


def _end_process(status: int) -> None:
    """End the ``dicomdesk`` process now, with ``status``, skipping the interpreter's
    teardown: freeing every module's objects one by one takes longer than a C-ECHO here
    (docs/internals.md, timings), and the OS frees the
    memory at once. Log handlers and stdout/stderr are flushed first; with another thread
    still running, or output that cannot be flushed, the normal exit runs instead (it
    joins threads and reports a broken pipe as Python always does)."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no stream, a closed one, a broken pipe
        return
    os._exit(status)


def _run(command: str, args: argparse.Namespace) -> int:
    """Configure logging for ``args`` and run the sub-command; its exit status."""
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if command == "serve":
        level = min(level, logging.INFO)
    # -v/-vv raise dicomdesk's own loggers; libraries (pydicom, its plugins) stay at warnings.
    logging.getLogger("dicomdesk").setLevel(level)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
                        if args.verbose >= 2 else "%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from .net.printable import PrintableLogFilter

    for handler in logging.getLogger().handlers:  # a peer's AE title cannot forge a log line
        handler.addFilter(PrintableLogFilter())
    if args.verbose >= 2:  # -vv also prints the protocol trace of every association
        from .commands.trace_output import install

        install()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
