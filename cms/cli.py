"""The ``cms`` command: create a content repository, serve the API, manage tokens, check files."""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .errors import CmsError
from .identity.actors import ROLES
from .site.commands import add_commands as add_site_commands

if TYPE_CHECKING:
    from .editing.workflow import Workflow


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C, at any moment of any command: stopped as asked, no trace
        return 130
    except CmsError as exc:
        where = f"{exc.field}: " if exc.field else ""
        # What happened, for the operator (an upstream's address without who connects).
        detail = getattr(exc, "detail", "")
        print(f"cms: {where}{exc.message}" + (f" ({detail})" if detail else ""),
              file=sys.stderr)
        return 1
    except OSError as exc:
        # A path the command was given that cannot be used (a file where a folder must be, no
        # permission): said in a line, as for any other bad argument.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cms: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cms", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create and seed a content repository")
    init.add_argument("--repo", type=Path, help="where to create it (default: $CMS_REPO)")
    init.add_argument("--seed", type=Path,
                      help="folder of comparison files to publish in the first commit "
                           "(default: the sample comparisons that ship with the CMS)")
    init.add_argument("--empty", action="store_true", help="create it without seeding")
    init.set_defaults(run=_init)

    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--repo", type=Path)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--read-only", action="store_true", default=None,
                       help="serve published reads, sync and feeds only, writing nothing")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token; it is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", required=True, choices=ROLES,
                        dest="roles", help="repeat for several roles")
    create.set_defaults(run=_token_create)
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    listing.set_defaults(run=_token_list)
    revoke = token_commands.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(run=_token_revoke)

    export = commands.add_parser("export", help="write the published content as static files")
    export.add_argument("--out", type=Path, required=True, help="the folder to write")
    export.add_argument("--repo", type=Path)
    export.set_defaults(run=_export)

    workflows = commands.add_parser("workflows", help="check workflow definitions")
    workflow_commands = workflows.add_subparsers(required=True, metavar="ACTION")
    check = workflow_commands.add_parser(
        "check", help="check definition files (default: the workflows this configuration loads)")
    check.add_argument("files", type=Path, nargs="*", metavar="FILE")
    check.set_defaults(run=_workflows_check)
    push = workflow_commands.add_parser(
        "push", help="put definition files in force in the content repository (a commit on main)")
    push.add_argument("files", type=Path, nargs="+", metavar="FILE")
    push.add_argument("--author", required=True, metavar='"NAME <EMAIL>"',
                      help="the admin making the change, as git records people")
    push.add_argument("--comment", default="", help="why: the commit's body")
    push.add_argument("--repo", type=Path)
    push.set_defaults(run=_workflows_push)

    validate = commands.add_parser("validate", help="check a folder of comparison files")
    validate.add_argument("path", type=Path)
    validate.set_defaults(run=_validate)

    add_site_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        repo=getattr(args, "repo", None), host=getattr(args, "host", None),
        port=getattr(args, "port", None), read_only=getattr(args, "read_only", None),
    )


def _init(args: argparse.Namespace) -> int:
    from .bundled import samples
    from .editing.seed import clone_if_seeded, initialise

    settings = _settings(args)
    if clone_if_seeded(settings) is not None:
        print(f"Cloned the content repository from the upstream into {settings.repo}")
        return 0
    _, count = initialise(settings, None if args.empty else args.seed or samples())
    print(f"Created the content repository {settings.repo} with {count} published comparisons")
    return 0


def without_unused_plugins() -> None:
    """The API's types are msgspec structs. Litestar loads its pydantic and attrs plugins
    whenever those can be imported (they can, beside some development tools), which costs a
    third of a second of every start (pydantic) and a sixteenth (attrs) for nothing the server
    uses: here they cannot be imported."""
    # attrs comes as two packages, `attr` (the costly one, imported first) and `attrs`.
    for unused in ("pydantic", "attr", "attrs"):
        if unused not in sys.modules:
            sys.modules[unused] = None  # type: ignore[assignment]


_SWITCH_SECONDS = 0.0005


def _serve(args: argparse.Namespace) -> int:
    without_unused_plugins()
    from .memory import one_malloc_arena

    one_malloc_arena()  # before any thread of the server's starts
    # The event loop answers every request; other threads (a search that reads the catalogue,
    # the catalogue's fill) wait for it rather than it for them. A thread that wants the
    # interpreter gets it after at most this long, and holds it as long again: at the default
    # 5 ms, a few searches in threads put every request of 32 connections 5-15 ms behind.
    sys.setswitchinterval(_SWITCH_SECONDS)
    import gc

    import uvicorn

    from .api.services import build_services
    from .api.starting import Starting
    from .one_write import OneWriteProtocol

    settings = _settings(args)
    services = build_services(settings)
    # The decoded index lives as long as the server and is millions of objects that every full
    # collection would walk: 300 ms at 50,000 comparisons, a stall for every request in flight.
    # Freezing them once they are all there leaves the collector only what requests allocate.
    services.index.filled.append(gc.freeze)
    # Bind first, so the printed URL carries the real port even when port 0 was asked for.
    try:
        listener = socket.create_server((settings.host, settings.port))
    except OSError as exc:
        print(f"cms: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    # Accepted connections inherit this: without it a keep-alive client waits out the peer's
    # delayed ACK (about 40 ms) whenever a response goes out in two writes.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host, port = listener.getsockname()[:2]
    command = sys.argv[0] if sys.argv[0].endswith("cms") else "cms"
    then = ("a read-only replica: published reads, sync and feeds" if settings.read_only else
            f"get a token with: {command} token create --name NAME --email EMAIL --role admin")
    print(f"CMS serving http://{host}:{port} (OpenAPI at /schema); {then}", flush=True)

    def build() -> Any:
        # In a worker thread, while published reads are answered (see api/starting.py).
        from .api.app import create_app, served

        app = served(create_app(settings, services))
        # The async library's backend, which its thread pool imports on first use (30 ms): here,
        # not in the first request that a route answers in a thread.
        importlib.import_module("anyio._backends._asyncio")
        return app

    server: uvicorn.Server | None = None

    def give_up() -> None:
        if server is not None:
            server.should_exit = True

    starting = Starting(services, build, give_up)
    # Which proxies to believe is the app's decision (CMS_TRUSTED_PROXIES): uvicorn's own would
    # take X-Forwarded-For from any local peer.
    config = uvicorn.Config(starting, log_level="warning", access_log=False, lifespan="on",
                            proxy_headers=False, http=OneWriteProtocol)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # Ctrl-C: the server stopped as asked, no trace
        return 130
    # As the server itself does when an app's start-up fails.
    return 3 if starting.failed else 0


def _token_create(args: argparse.Namespace) -> int:
    from .identity.tokens import TokenStore

    settings = _settings(args)
    record, token = TokenStore.open(settings).create(args.name, args.email, args.roles)
    print(f"Created token {record.id} for {record.name} <{record.email}> "
          f"with roles: {', '.join(record.roles)}")
    print("It is shown only now; keep it secret. Send it as `Authorization: Bearer <token>`.")
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from .identity.tokens import TokenStore

    records = TokenStore.open(_settings(args)).all()
    if not records:
        print("No tokens yet: create one with `cms token create`.")
    for record in records:
        status = f"revoked {record.revoked_at:%Y-%m-%d}" if record.revoked_at else "active"
        print(f"{record.id}  {record.name} <{record.email}>  {','.join(record.roles)}  "
              f"created {record.created_at:%Y-%m-%d}  {status}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from .identity.tokens import TokenStore

    record = TokenStore.open(_settings(args)).revoke(args.id)
    print(f"Revoked token {record.id} of {record.name} <{record.email}>")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .editing.write_side import open_write_side
    from .identity.keys import signing_key
    from .reading.export import export
    from .reading.sync import Sync

    settings = _settings(args)
    documents = open_write_side(settings).documents
    sync = Sync(documents, signing_key(settings, "sync"))
    result = export(documents, sync, settings.base_url, args.out)
    print(f"Exported {result.comparisons} comparisons to {args.out}: {result.written} written, "
          f"{result.unchanged} unchanged, {result.removed} removed")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .editing.seed import check_folder

    if not args.path.exists():
        print(f"cms: {args.path} does not exist", file=sys.stderr)
        return 1
    good, problems = check_folder(args.path)
    for problem in problems:
        print(f"{problem.path}: {problem.message}")
    print(f"{len(good)} valid, {len(problems)} invalid")
    return 1 if problems else 0


def _workflows_check(args: argparse.Namespace) -> int:
    from .editing.workflow import load_workflow
    from .editing.write_side import workflows_of

    if not args.files:
        loaded = workflows_of(_settings(args))  # the set, and its default, checked together
        for workflow in loaded.by_name.values():
            default = " (the default)" if workflow is loaded.default else ""
            print(f"ok: {workflow.name}{default}: {_shape(workflow)}")
        return 0
    failed = 0
    for path in args.files:
        try:
            workflow = load_workflow(path)
        except CmsError as exc:
            print(f"cms: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        print(f"ok: {path}: {_shape(workflow)}")
    return 1 if failed else 0


def _workflows_push(args: argparse.Namespace) -> int:
    from .editing.write_side import open_write_side
    from .identity.actors import Actor

    name, _, email = str(args.author).rpartition("<")
    if not name.strip() or not email.endswith(">") or "@" not in email:
        print('cms: give the author as "Name <email>"', file=sys.stderr)
        return 1
    author = Actor(name=name.strip(), email=email[:-1].strip(), roles=frozenset({"admin"}))
    sources = {}
    for path in args.files:
        try:
            sources[path.name] = path.read_bytes()
        except OSError as exc:
            print(f"cms: {path}: {exc.strerror}", file=sys.stderr)
            return 1
    content = open_write_side(_settings(args))
    commit = content.workflows.push(sources, author, content.pipeline, args.comment)
    names = ", ".join(sorted(path.stem for path in args.files))
    if commit is None:
        print(f"already in force: {names}")
    else:
        print(f"in force from commit {commit}: {names}")
    return 0


def _shape(workflow: Workflow) -> str:
    stages = [f"{name} ({', '.join(t.roles)})" for name, t in workflow.transitions.items()
              if t.approval]
    return (f"{len(workflow.states)} states, {len(workflow.transitions)} transitions, "
            f"{workflow.approvals_to_publish} approval(s) to publish: {' then '.join(stages)}")


if __name__ == "__main__":
    raise SystemExit(main())
