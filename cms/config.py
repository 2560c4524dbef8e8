"""Settings, read once from the environment so the server and every CLI command agree."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from .identity.visible import EMAIL_PATTERN, NAME_PATTERN

# A branch git takes (`git check-ref-format --branch`), in the plainest form: dot- or
# slash-separated parts of letters, digits, `_` and `-`, none ending in `.lock`; not `HEAD`, not
# under `cms/` (the review branches' own) nor spelled as a full ref.
_BRANCH = (r"^(?!.*\.lock(?:[./]|\Z))(?!HEAD\Z)(?!cms(?:/|\Z))(?!refs/)"
           r"[A-Za-z0-9_][A-Za-z0-9_-]*(?:[./][A-Za-z0-9_][A-Za-z0-9_-]*)*\Z")
# A folder inside the repository's tree: relative, and no part empty, `.`, `..` or hidden, all
# of which `git fsck --strict` refuses in a tree or which would escape it.
_FOLDER = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*\Z"
_SHAPES = {"branch": "a branch name like `main` or `content/main` (not `HEAD`, nothing under "
                     "`cms/`, at most 100 characters)",
           "committer_name": "a name shown as written: no `<`, `>`, controls or invisible marks",
           "committer_email": "an address like `cms@example.com`",
           "fetch_interval": "seconds between fetches, from 0.05 to 3600",
           "content_dir": "a relative folder like `content` or `site/data` (no empty, `.`, `..` "
                          "or hidden parts; at most 200 characters)"}


class Settings(Struct, frozen=True, kw_only=True):
    repo: Path = Path("var/content")
    data: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    branch: Annotated[str, Meta(max_length=100, pattern=_BRANCH)] = "main"
    content_dir: Annotated[str, Meta(max_length=200, pattern=_FOLDER)] = "content"
    # Workflow definitions: a folder of them (None: those that ship), the name new comparisons
    # follow, and one more file (which becomes the default).
    workflows: Path | None = None
    default_workflow: str = "default"
    workflow: Path | None = None
    public_url: str = ""
    committer_name: Annotated[str, Meta(max_length=100, pattern=NAME_PATTERN)] = "CMS"
    committer_email: Annotated[str, Meta(max_length=254, pattern=EMAIL_PATTERN)] = \
        "cms@localhost"
    # Flush objects and refs to disk before acknowledging a write. Off only for throwaway repos.
    durable: bool = True
    # Seconds between webhook attempts; after the last one a delivery is marked failed.
    webhook_backoff: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    webhook_timeout: float = 10.0
    # Loopback and private-network receivers are refused unless this is set (tests, intranets).
    webhook_allow_private: bool = False
    # Deliver in a background thread; off only where a caller drains the queue itself.
    webhook_worker: bool = True
    # Pending community votes are folded into git this often (one commit per batch).
    vote_fold_seconds: float = 60.0
    # Votes one client may cast on one comparison per minute (0: no limit).
    vote_rate: int = 30
    # Proxies (IP addresses or networks) whose X-Forwarded-For names the voter; none by default,
    # since anyone can send that header.
    trusted_proxies: tuple[str, ...] = ()
    # The git remote that instances sharing one repository push every write to before
    # acknowledging it (empty: this repository alone is the record); how often each instance
    # fetches what the others wrote; and the secret a forge's push webhook is signed with.
    upstream: str = ""
    # Serve the delivery API only (published reads, sync, feeds), following the upstream:
    # nothing is written to git or to the shared database.
    read_only: bool = False
    fetch_interval: Annotated[float, Meta(ge=0.05, le=3600)] = 0.5
    git_hook_secret: str = ""
    # Where the state kept outside git lives (tokens, webhooks and their outbox, votes, preview
    # grants, signing keys, leases): a PostgreSQL URL that several instances share, or empty for
    # SQLite files under ``data`` (see cms/shared/database.py).
    database_url: str = ""
    # Ship a copy of the catalogue with the content, for new replicas to start from, once this
    # many comparisons were indexed since the last copy (0: never; see reading/shipped.py).
    catalogue_ship_from: Annotated[int, Meta(ge=0)] = 5000

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


_ENVIRONMENT = {
    "CMS_REPO": "repo",
    "CMS_DATA": "data",
    "CMS_HOST": "host",
    "CMS_PORT": "port",
    "CMS_BRANCH": "branch",
    "CMS_CONTENT_DIR": "content_dir",
    "CMS_WORKFLOW": "workflow",
    "CMS_WORKFLOWS": "workflows",
    "CMS_DEFAULT_WORKFLOW": "default_workflow",
    "CMS_PUBLIC_URL": "public_url",
    "CMS_COMMITTER_NAME": "committer_name",
    "CMS_COMMITTER_EMAIL": "committer_email",
    "CMS_DURABLE": "durable",
    "CMS_WEBHOOK_BACKOFF": "webhook_backoff",
    "CMS_WEBHOOK_TIMEOUT": "webhook_timeout",
    "CMS_WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
    "CMS_WEBHOOK_WORKER": "webhook_worker",
    "CMS_VOTE_FOLD_SECONDS": "vote_fold_seconds",
    "CMS_VOTE_RATE": "vote_rate",
    "CMS_TRUSTED_PROXIES": "trusted_proxies",
    "CMS_UPSTREAM": "upstream",
    "CMS_FETCH_INTERVAL": "fetch_interval",
    "CMS_GIT_HOOK_SECRET": "git_hook_secret",
    "CMS_READ_ONLY": "read_only",
    "CMS_DATABASE_URL": "database_url",
    "CMS_CATALOGUE_SHIP_FROM": "catalogue_ship_from",
}
_FLAGS = ("durable", "webhook_allow_private", "webhook_worker", "read_only")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then ``CMS_*`` variables, then explicit overrides (command-line flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, field in _ENVIRONMENT.items():
        if env.get(variable):
            values[field] = env[variable]
    values.update({key: value for key, value in overrides.items() if value is not None})
    for flag in _FLAGS:
        if isinstance(values.get(flag), str):
            values[flag] = values[flag].lower() not in {"", "0", "false", "no", "off"}
    if isinstance(values.get("webhook_backoff"), str):
        try:
            values["webhook_backoff"] = tuple(
                float(part) for part in values["webhook_backoff"].split(",") if part.strip())
        except ValueError:
            raise SystemExit("cms: CMS_WEBHOOK_BACKOFF must be comma-separated seconds, "
                             "e.g. 5,300,1800") from None
    if isinstance(values.get("trusted_proxies"), str):
        values["trusted_proxies"] = tuple(
            part.strip() for part in values["trusted_proxies"].split(",") if part.strip())
    for proxy in values.get("trusted_proxies", ()):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SystemExit(f"cms: CMS_TRUSTED_PROXIES: `{proxy}` is not an IP address or "
                             "network, e.g. 10.0.0.0/8,127.0.0.1") from None
    url = str(values.get("database_url", ""))
    if url and not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        # The value itself is not repeated: it may hold a password.
        raise SystemExit("cms: bad setting CMS_DATABASE_URL: a PostgreSQL URL like "
                         "postgresql://cms:PASSWORD@db.example.com:5432/cms, sqlite:///PATH, or "
                         "empty for SQLite files under CMS_DATA")
    for field in ("repo", "data", "workflow", "workflows"):
        if field in values:
            values[field] = Path(values[field])
    try:
        return msgspec.convert(values, Settings, strict=False, from_attributes=True)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$.")
        field = at.rstrip("`")
        variable = next((name for name, known in _ENVIRONMENT.items() if known == field), field)
        raise SystemExit(f"cms: bad setting {variable}: "
                         f"{_SHAPES.get(field, message)}") from None
