"""This checkout's development secrets (SECRET_KEY, JWT_SECRET_KEY) when the environment sets none and
DEBUG is on: random, made on first use and kept in a file git ignores, so no secret anyone could
read in the code signs tokens on a developer's machine."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def load(path: Path) -> dict[str, str]:
    """The secrets in `path`, made there first if it does not exist (by one process: the others read it)."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    fresh = {"SECRET_KEY": secrets.token_urlsafe(48), "JWT_SECRET_KEY": secrets.token_urlsafe(32)}
    try:
        # Written whole to a temporary file, then linked into place: no reader ever sees half of it.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".dev-secrets.")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(fresh, handle)
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
    except FileExistsError:
        return _read(path)
    except OSError:
        # A checkout we cannot write to: this process's own secrets (tokens die with it).
        logger.warning("could not keep development secrets in %s; using this process's own", path)
    return fresh


def _read(path: Path) -> dict[str, str]:
    values = json.loads(path.read_text())
    return {"SECRET_KEY": str(values["SECRET_KEY"]), "JWT_SECRET_KEY": str(values["JWT_SECRET_KEY"])}
