"""``dicomdesk send``: C-STORE every DICOM file under the given paths (PS3.4 Annex B).

Give options before the positionals (``dicomdesk send --aec PACS HOST PORT PATH...``):
argparse cannot take options between HOST PORT and the paths of a sub-command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shlex
import sys
import time

from ..units import human_size
from .common import add_peer_arguments, peer_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("send", help="send DICOM files and folders to a node (C-STORE)")
    add_peer_arguments(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (recursive) or DICOMDIRs")
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="C-STOREs kept outstanding where the peer accepts an asynchronous "
                             "operations window (PS3.7 D.3.3.3) [8]; 1 proposes none (for a peer "
                             "that cannot take the proposal)")
    parser.add_argument("--max-pdu", type=int, default=65536,
                        help="maximum PDU length we receive, 0 = no limit [65536]")
    change = parser.add_argument_group(
        "changes to what is sent (the files on disk are never modified)")
    change.add_argument("--deidentify", nargs="?", const="basic", default=None, metavar="PROFILE",
                        help="de-identify with the PS3.15 Annex E Basic Profile; PROFILE adds options: "
                             "basic[,retain-dates][,retain-patient-characteristics]"
                             "[,retain-device-identity][,clean-descriptors]")
    change.add_argument("--allow-burned-in", action="store_true",
                        help="with --deidentify: also send images whose Burned In Annotation is YES")
    change.add_argument("--mapping", metavar="FILE", default=None,
                        help="with --deidentify: write original -> new identifiers to FILE (JSON)")
    change.add_argument("--set", dest="edits", action="append", default=[], metavar="TAG=VALUE",
                        help="set an attribute in every object sent (keyword or gggg,eeee); repeatable")
    change.add_argument("--allow-uid-edits", action="store_true", help="let --set change UIDs")
    change.add_argument("--decompress", choices=("lossless", "all", "never"), default="lossless",
                        help="when the peer refuses a compressed file's syntax, send it decompressed: "
                             "lossless syntaxes only, all (lossy too), never [lossless]")
    change.add_argument("--compress", choices=("jpeg-ls-lossless", "jpeg2000-lossless", "rle"),
                        default=None, help="send uncompressed images compressed (if the peer accepts)")
    parser.set_defaults(func=run)


def _transform_arguments(args: argparse.Namespace) -> list[str]:
    """The change options of this run, for the retry command."""
    out: list[str] = []
    if args.deidentify:
        out += ["--deidentify", args.deidentify]
    if args.allow_burned_in:
        out.append("--allow-burned-in")
    if args.mapping:
        out += ["--mapping", args.mapping]
    for edit in args.edits:
        out += ["--set", edit]
    if args.allow_uid_edits:
        out.append("--allow-uid-edits")
    if args.decompress != "lossless":
        out += ["--decompress", args.decompress]
    if args.compress:
        out += ["--compress", args.compress]
    return out


def _unswallow_host(args: argparse.Namespace) -> None:
    """``--deidentify HOST PORT PATH...``: argparse gives HOST to the optional PROFILE; a value
    that names no profile option is the host, and the positionals shift back by one."""
    value = args.deidentify
    if not value:
        return
    from ..transform.profile import OPTIONS

    if all(part.strip().lower() in ("basic", *OPTIONS) for part in value.split(",")):
        return
    rest = [args.host] + ([args.port] if args.port is not None else []) + list(args.paths)
    args.deidentify = "basic"
    args.host, args.port, args.paths = value, rest[0], rest[1:]


def _split_host_port(args: argparse.Namespace) -> None:
    """``HOST PORT PATH...`` and ``NODE PATH...``: a non-numeric PORT is the first path."""
    if args.port is not None and not str(args.port).isdigit():
        args.paths.insert(0, args.port)
        args.port = None


def _transform_from_args(args: argparse.Namespace):
    """The ``Transform`` the options ask for (modules imported only when an option is used)."""
    edits_given = bool(getattr(args, "edits", None))
    if not (args.deidentify or edits_given or args.compress or args.decompress != "lossless"):
        return None
    from ..transform.spec import Transform

    profile = edits = None
    if args.deidentify:
        from ..transform.deidentify import Profile

        try:
            profile = Profile.parse(args.deidentify)
        except ValueError as exc:
            raise SystemExit(f"dicomdesk: --deidentify: {exc}") from None
    if edits_given:
        from ..transform.edits import EditError, parse_edits

        try:
            edits = parse_edits(args.edits, allow_uids=args.allow_uid_edits)
        except EditError as exc:
            raise SystemExit(f"dicomdesk: --set {exc}") from None
    if args.mapping and not args.deidentify:
        raise SystemExit("dicomdesk: --mapping needs --deidentify")
    return Transform(deidentify=profile, edits=edits or (), decompress=args.decompress,
                     compress=args.compress, allow_burned_in=args.allow_burned_in,
                     mapping_path=args.mapping)


def run(args: argparse.Namespace) -> int:
    from ..operations.files import scan_paths
    from ..operations.sending import send

    import logging

    # pydicom logs every oddity of real-world files as a warning; our per-file messages
    # already say what matters (run with -vv to see them).
    if args.verbose < 2:
        logging.getLogger("pydicom").setLevel(logging.ERROR)
    _unswallow_host(args)
    _split_host_port(args)
    transform = _transform_from_args(args)
    peer = peer_from_args(args)
    missing = [str(p) for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"dicomdesk: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    infos = scan_paths(args.paths, details=False)  # names are not shown: plan only
    if not infos:
        print("dicomdesk: no files found under the given paths", file=sys.stderr)
        return 1
    if not any(i.is_dicom for i in infos):
        print(f"dicomdesk: no DICOM instance to send ({len(infos)} file(s) skipped)",
              file=sys.stderr)
        listed = [i for i in infos if i.part10] + [i for i in infos if i.not_dicom][:10]
        for info in listed:
            print(f"  skipped {info.path}: {info.reason}", file=sys.stderr)
        return 1
    tty = sys.stdout.isatty()
    started = time.monotonic()
    total_files = sum(1 for i in infos if i.is_dicom)
    done = [0]

    # every Part-10 file that will not be sent is named with its reason (a DICOMDIR...);
    # only files that are not DICOM at all are summed up
    named = [i for i in infos if not i.is_dicom and i.part10]
    for info in named:
        print(f"not sent: {info.path}: {info.reason}", flush=True)

    def progress(p) -> None:
        if p.state in ("stored", "failed") and p.index < len(infos) and infos[p.index].is_dicom:
            done[0] += 1
        if p.state == "failed" and not tty:
            print(f"failed: {p.message}", flush=True)
        if tty:
            elapsed = max(time.monotonic() - started, 1e-6)
            line = (f"\r{done[0]}/{total_files} files, {human_size(p.bytes_done)}/{human_size(p.bytes_total)}, "
                    f"{human_size(p.bytes_done / elapsed)}/s")
            sys.stdout.write(line.ljust(70))
            sys.stdout.flush()
            if p.state == "failed":
                sys.stdout.write(f"\nfailed: {p.message}\n")

    window = {} if args.window is None else {"max_outstanding": max(1, args.window)}
    result = send(peer, infos, progress=progress, max_pdu_length=args.max_pdu, transform=transform,
                  **window)
    elapsed = time.monotonic() - started
    if tty:
        sys.stdout.write("\n")
    sent_bytes = sum(i.size for i, o in zip(infos, result.outcomes) if o.state == "stored")
    print(f"sent to {peer.describe()}: {result.stored} stored"
          f"{f' ({result.warnings} with warnings)' if result.warnings else ''}, {result.failed} failed, "
          f"{result.skipped - len(named)} skipped (not DICOM)"
          f"{f', {len(named)} not sent (named above)' if named else ''} in {elapsed:.1f} s, "
          f"{human_size(sent_bytes)} "
          f"({human_size(sent_bytes / max(elapsed, 1e-6))}/s)")
    changed = [o for o in result.outcomes if o.state == "stored" and o.note]
    for outcome in changed:
        print(f"sent {outcome.note}: {outcome.path}")
    if changed:
        print(f"{len(result.decompressed)} file(s) sent decompressed, "
              f"{len(changed) - len(result.decompressed)} compressed")
    if result.mapping_path is not None:
        print(f"de-identification mapping written to {result.mapping_path}")
    if result.error:
        print(f"dicomdesk: {result.error}", file=sys.stderr)
    if result.failed_paths:
        retry = [sys.argv[0] if sys.argv and sys.argv[0].endswith("dicomdesk") else "dicomdesk", "send"]
        retry += ["--aet", peer.calling_aet, "--aec", peer.called_aet, "--timeout", f"{peer.timeout:g}",
                  "--max-pdu", str(args.max_pdu)]
        retry += _transform_arguments(args)
        retry += [peer.host, str(peer.port)]
        retry += [str(p) for p in result.failed_paths]
        print("to retry the failed files:\n  " + shlex.join(retry))
    return 0 if result.ok else 1
