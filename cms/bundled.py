"""What ships with the CMS besides its code: the default workflow and the sample comparisons.

An installed package carries them inside itself (``cms/_bundled``, put there when the wheel is
built); a checkout has them at the top of the project, where editors change them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import NotFound

_CHECKOUT = Path(__file__).resolve().parent.parent


def folder(name: str) -> Path:
    """The shipped folder ``name`` (``workflows`` or ``content``)."""
    package = resources.files(__package__ or "cms")
    # Installed the usual way, a package is a folder on disk; the files are read as such.
    if isinstance(package, Path) and (package / "_bundled" / name).is_dir():
        return package / "_bundled" / name
    if (_CHECKOUT / name).is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / name
    raise NotFound(f"the CMS was installed without its `{name}` folder; reinstall it from a "
                   "wheel or a checkout", field=name)


def default_workflow() -> Path:
    return folder("workflows") / "default.toml"


def samples() -> Path:
    """The sample comparisons a new repository is seeded with."""
    return folder("content")
