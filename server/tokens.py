"""The bearer token an HTTP server makes for itself when none is given, kept for its next start.

As Jupyter does: SSE and HTTP always need a token, so a local user who did not configure one
still cannot reach a server that runs shell commands. The token lives in a 0600 file in the
user's state folder (``$XDG_STATE_HOME/agent-jobs/token``, else ``~/.local/state/agent-jobs/token``,
folder 0700, tightened if it is ours and open); a file others could read, or a file or folder that
belongs to someone else, is refused.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

FILE_NAME = "token"


class TokenFileError(Exception):
    """The token file or its folder cannot be used safely; the message names the path."""


def default_path(env: Mapping[str, str]) -> Path:
    """Where the token is kept, from the given environment (never the process's own, for tests)."""
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG spec: a relative value is invalid and ignored
        home = env.get("HOME") or os.path.expanduser("~")
        state = os.path.join(home, ".local", "state")
    return Path(state) / "agent-jobs" / FILE_NAME


def _check_private(path: Path, st: os.stat_result, kind: str) -> None:
    if st.st_uid != os.getuid():
        raise TokenFileError(f"token {kind} {path} belongs to another user (uid {st.st_uid})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise TokenFileError(
            f"token {kind} {path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"chmod {'700' if kind == 'folder' else '600'} it, or remove it for a new one"
        )


def _private_folder(folder: Path) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
    except OSError as exc:
        raise TokenFileError(f"token folder {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise TokenFileError(f"token folder {folder} is not a folder")
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        try:  # our own folder, made by someone's umask: tighten it, as the job store's root is
            os.chmod(folder, 0o700)
            st = os.lstat(folder)
        except OSError as exc:
            raise TokenFileError(f"token folder {folder}: {exc.strerror or exc}") from None
    _check_private(folder, st, "folder")


def _read(path: Path) -> str | None:
    """The stored token, or None when there is none yet (missing or empty file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"token file {path}: {exc.strerror or exc}") from None
    with open(fd, encoding="utf-8") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"token file {path} is not a regular file")
        _check_private(path, st, "file")
        token = fh.read().strip()
    return token or None


def _write_new(path: Path) -> None:
    """Write a fresh token to a private temporary file, then link it in place.

    The link fails if another server made the file meanwhile; that one's token is then used.
    """
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            if _read(path) is None:  # an empty file left by a crash: replace it
                os.replace(tmp, path)
                return
    finally:
        tmp.unlink(missing_ok=True)


def stored_token(path: Path) -> str:
    """The token in ``path``, made (0600, folder 0700) when there is none; raises :class:`TokenFileError`."""
    _private_folder(path.parent)
    token = _read(path)
    if token is None:
        try:
            _write_new(path)
        except OSError as exc:
            raise TokenFileError(f"token file {path}: {exc.strerror or exc}") from None
        token = _read(path)
        if token is None:
            raise TokenFileError(f"token file {path}: still empty after writing it")
    return token
