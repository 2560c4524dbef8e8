"""`cms site build` and `cms site watch`: the command line of the reference site.

The builder, its HTTP client and the receiver are imported when a site command runs, not when
the `cms` command starts: every other command (`cms serve` among them) would pay for them."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SECRET_VARIABLE = "CMS_SITE_SECRET"  # noqa: S105 - the name of a variable, not a secret


def add_commands(commands: Any) -> None:
    site = commands.add_parser("site", help="the reference website, built from the public API")
    actions = site.add_subparsers(required=True, metavar="ACTION")
    once = actions.add_parser("build", help="build the site (incrementally after the first time)")
    _common(once)
    once.set_defaults(run=_build)
    watch = actions.add_parser("watch", help="rebuild the site on each signed publish webhook")
    _common(watch)
    watch.add_argument("--listen", required=True, metavar="HOST:PORT",
                       help="where to receive webhooks, e.g. 127.0.0.1:8700")
    watch.add_argument("--secret", action="append", default=[], metavar="whsec_…",
                       help=f"the endpoint's signing secret (twice while rotating); better in "
                            f"{SECRET_VARIABLE}, which a process list does not show")
    watch.add_argument("--settle", type=float, default=0.2, metavar="SECONDS",
                       help="how long a burst of events is gathered into one rebuild")
    watch.add_argument("--refresh", type=float, default=300.0, metavar="SECONDS",
                       help="rebuild this often when no event comes, for what no webhook "
                            "announces (folds of community votes); 0: never")
    watch.set_defaults(run=_watch)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", required=True, help="the CMS's address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", required=True, type=Path, help="the site's folder")
    parser.add_argument("--state", type=Path, default=None,
                        help="where the builder keeps its sync state (default: OUT.state beside OUT)")
    parser.add_argument("--site-url", default="",
                        help="the site's public address, for absolute links in the Atom feed")


def _api(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        _ = parts.port  # a port that is not one raises here
    except ValueError:
        return None
    return value.rstrip("/")


def _out_problem(out: Path, state: Path) -> str | None:
    """Why the site cannot be written to ``out`` (with its state in ``state``), if it cannot."""
    for folder, option in ((out, "--out"), (state, "--state")):
        if folder.exists() and not folder.is_dir():
            return f"{option}: {folder} is a file, not a folder"
        parent = folder
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            return f"{option}: {folder} cannot be written"
    return None


def _fail(message: str) -> int:
    print(f"cms: {message}", file=sys.stderr)
    return 1


def _state_folder(args: argparse.Namespace) -> Path:
    """``--state``, or the folder beside ``--out``: ``public/`` keeps it in ``public.state/``."""
    out: Path = args.out
    return args.state or out.parent / f"{out.name}.state"


def _build(args: argparse.Namespace) -> int:
    from .build import build
    from .source import Source, SourceError

    api = _api(args.api)
    if api is None:
        return _fail("--api: give the CMS's http:// or https:// address")
    state = _state_folder(args)
    problem = _out_problem(args.out, state)
    if problem is not None:
        return _fail(problem)
    source = Source(api)
    try:
        result = build(source, args.out, state, site_url=args.site_url)
    except SourceError as exc:
        return _fail(str(exc))
    finally:
        source.close()
    print(f"Built {args.out}: {result.comparisons} comparisons published, "
          f"{len(result.written)} files written, {len(result.removed)} removed")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from .watch import Receiver

    api = _api(args.api)
    if api is None:
        return _fail("--api: give the CMS's http:// or https:// address")
    host, colon, port = args.listen.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or not host.strip("[]") or \
            int(port) > 65535:
        return _fail("--listen: give HOST:PORT, e.g. 127.0.0.1:8700 or [::1]:8700")
    if not 0 <= args.settle <= 60:
        return _fail("--settle: give 0 to 60 seconds")
    if not (args.refresh == 0 or 1 <= args.refresh <= 86_400):
        return _fail("--refresh: give 0 (never) or 1 to 86400 seconds")
    state = _state_folder(args)
    problem = _out_problem(args.out, state)
    if problem is not None:
        return _fail(problem)
    secrets = list(args.secret)
    if os.environ.get(SECRET_VARIABLE):
        secrets += os.environ[SECRET_VARIABLE].split()
    if not secrets:
        return _fail(f"--secret: give the endpoint's whsec_… secret (or set {SECRET_VARIABLE})")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line a request: too many
    try:
        receiver = Receiver(api=api, out=args.out, state_folder=state, secrets=secrets,
                            host=host.strip("[]"), port=int(port), site_url=args.site_url,
                            settle=args.settle, refresh=args.refresh or None)
    except ValueError as exc:
        return _fail(f"--secret: {exc}")
    except OSError as exc:
        return _fail(f"cannot listen on {args.listen}: {exc.strerror or exc}")
    print(f"Watching for webhooks on http://{host}:{receiver.port}/ (status at /status); "
          f"building {args.out} from {api}", flush=True)
    # SIGTERM stops it as Ctrl-C does: the answer in flight finishes, the rebuild thread ends.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(
        target=receiver.server.shutdown, daemon=True).start())
    with contextlib.suppress(KeyboardInterrupt):
        receiver.serve_forever()
    return 0
