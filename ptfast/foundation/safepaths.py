"""Files ptfast writes, reads or runs as root, kept out of every customer's reach.

A path is *safe* when no one but root (or, when ptfast runs as another user, that user) can
change what it names: every directory from ``/`` down to it is owned by root and not writable by
group or other, and the file itself is owned by root and not group/other-writable. Two
exceptions: a directory writable by its group is fine when that group is root's or the
system's (below GID_MIN of login.defs: Ubuntu's /var/log is root:syslog 0775, and no customer is
in syslog), and a world-writable directory with the sticky bit (``/tmp``) is fine when the entry
inside it is owned by root (the kernel then lets nobody else rename or remove that entry).
Symbolic links on the way are followed only when they sit in a safe directory (so no one else
can swap them); the file itself must not be a symbolic link, because ptfast opens it with
``O_NOFOLLOW`` (a program or a directory may be a link).

Opening goes with the checks: ``O_NOFOLLOW`` (never through a symlink), ``O_NONBLOCK`` (a FIFO
planted in place of a file cannot block ptfast), then ``fstat`` on the opened file: a regular
file, owned by root. Temporary files are created with ``O_EXCL`` under random names
(``tempfile.mkstemp``).
"""

from __future__ import annotations

import errno
import os
import stat

DIRECTORY, FILE, PROGRAM = "directory", "file", "program"
MAX_SYMLINKS = 40         # as the kernel's own limit on links followed in one lookup
NULL_DEVICE = os.makedev(1, 3)


class UnsafePath(OSError):
    """A path a customer could reach; ``str()`` names the path and says why."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EPERM, why, path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _system_gids_below() -> int:
    from ptfast.foundation.users import gid_min
    return gid_min()


def trusted_owners() -> frozenset:
    """Who may own what ptfast trusts: root, and the user ptfast runs as."""
    return frozenset({0, os.geteuid()})


def _owner_problem(info: os.stat_result, what: str) -> str | None:
    if info.st_uid not in trusted_owners():
        return f"{what} is owned by uid {info.st_uid}, not by root"
    return None


def _writable_problem(info: os.stat_result, what: str) -> str | None:
    mode = info.st_mode
    if mode & stat.S_IWOTH:
        return f"{what} is writable by every user (mode {stat.S_IMODE(mode):04o})"
    if mode & stat.S_IWGRP and info.st_gid != 0 and info.st_gid >= _system_gids_below():
        return (f"{what} is writable by group {info.st_gid} "
                f"(mode {stat.S_IMODE(mode):04o})")
    return None


def _directory_problem(path: str, info: os.stat_result, entry: os.stat_result | None) -> str | None:
    """Can anyone but root change what ``path`` (a directory on the way) holds? ``entry`` is the
    next component inside it (None when it does not exist yet)."""
    what = f"directory {path}"
    problem = _owner_problem(info, what)
    if problem:
        return problem
    problem = _writable_problem(info, what)
    if problem is None:
        return None
    # /tmp: world-writable with the sticky bit, so only an entry's owner may rename or remove it
    sticky_entry_safe = (info.st_mode & stat.S_ISVTX and entry is not None
                         and entry.st_uid in trusted_owners())
    return None if sticky_entry_safe else problem


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def path_problem(path: str, kind: str) -> str | None:
    """Why ``path`` is not safe for root to use as ``kind`` (DIRECTORY or FILE to write in or
    to, PROGRAM to run); None when it is. A path that does not exist yet is safe when the
    directories it would be created in are."""
    if not path:
        return "empty path"
    # not os.path.abspath: it drops "name/.." before "name" (maybe a link) is resolved
    pending = [name for name in os.path.join(os.getcwd(), path).split("/") if name]
    pending.reverse()                   # a stack: the next component is at the end
    current = "/"
    current_info = os.lstat(current)
    links = 0
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            current_info = os.lstat(current)
            continue
        candidate = os.path.join(current, name)
        try:
            info = _lstat(candidate)
        except OSError as exc:
            return f"cannot inspect {candidate}: {exc.strerror}"
        problem = _directory_problem(current, current_info, info)
        if problem:
            return problem
        if info is None:
            # ptfast creates what is missing (mode 0700, as root): safe once its parent is
            return None
        is_last = not pending
        if stat.S_ISLNK(info.st_mode):
            if is_last and kind == FILE:
                return f"{candidate} is a symbolic link; ptfast does not write through one"
            links += 1
            if links > MAX_SYMLINKS:
                return f"{candidate}: too many levels of symbolic links"
            target = os.readlink(candidate)
            # the link sits in a directory already found safe, so no one else can swap it
            pending.extend(reversed([part for part in target.split("/") if part]))
            if target.startswith("/"):
                current, current_info = "/", os.lstat("/")
            continue
        if is_last:
            return _final_problem(candidate, info, kind)
        if not stat.S_ISDIR(info.st_mode):
            return f"{candidate} is not a directory"
        current, current_info = candidate, info
    # the path names "/" itself (or resolves to it)
    return _final_problem(current, current_info, kind)


def _final_problem(path: str, info: os.stat_result, kind: str) -> str | None:
    if kind == DIRECTORY:
        if not stat.S_ISDIR(info.st_mode):
            return f"{path} is not a directory"
        what = f"directory {path}"
    else:
        if not stat.S_ISREG(info.st_mode):
            return f"{path} is not a regular file"
        what = path
    return _owner_problem(info, what) or _writable_problem(info, what)


def require_safe(path: str, kind: str) -> None:
    """Raise UnsafePath unless ``path`` is safe as ``kind``."""
    problem = path_problem(path, kind)
    if problem:
        raise UnsafePath(path, problem)


def make_private_directory(path: str) -> None:
    """Create ``path`` (and missing parents) mode 0700 unless it exists; then require it safe.
    Raises UnsafePath or OSError."""
    require_safe(path, DIRECTORY)       # before creating anything under a customer's directory
    os.makedirs(path, mode=0o700, exist_ok=True)
    require_safe(path, DIRECTORY)


def service_path_problems(state_dir: str, files) -> list:
    """(path, why) for each of the service's paths a customer could reach: the state
    directory (lock, memory, spool) and ``files`` (log, events; None or "" for none)."""
    problems = []
    for path, kind in ((state_dir, DIRECTORY), *((path, FILE) for path in files if path)):
        problem = path_problem(path, kind)
        if problem:
            problems.append((path, problem))
    return problems


def _existing_ancestor(path: str) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    return parent


def unwritable_problem(path: str, kind: str) -> str | None:
    """Why the service could not write ``path`` (DIRECTORY or FILE): a read-only file system,
    a directory that does not exist (for a FILE: the service creates only the state
    directory), permissions. None when it can."""
    if os.path.lexists(path):
        if kind == DIRECTORY and not os.path.isdir(path):
            return None             # path_problem says what is wrong with it
        if not os.access(path, os.W_OK | (os.X_OK if kind == DIRECTORY else 0)):
            why = "read-only file system" if _read_only(path) else "permission denied"
            return f"cannot be written: {why}"
        return None
    parent = os.path.dirname(os.path.abspath(path))
    if kind == FILE and not os.path.isdir(parent):
        return f"cannot be written: directory {parent} does not exist"
    ancestor = _existing_ancestor(path) if kind == DIRECTORY else parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(ancestor) else "permission denied"
        return f"cannot be created in {ancestor}: {why}"
    return None


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def service_write_problems(state_dir: str, files) -> list:
    """(path, why) for each of the service's paths it could not write (``check`` says it
    before ``run`` fails on it)."""
    problems = []
    for path, kind in ((state_dir, DIRECTORY), *((path, FILE) for path in files if path)):
        problem = unwritable_problem(path, kind)
        if problem:
            problems.append((path, problem))
    return problems


def prepare_service_paths(state_dir: str, files) -> None:
    """Before the service writes anything: every path safe (else UnsafePath, naming the first
    one that is not), and the state directory created (0700) when missing."""
    for path, problem in service_path_problems(state_dir, files):
        raise UnsafePath(path, problem)
    make_private_directory(state_dir)


def _checked_fd(fd: int, path: str) -> int:
    """``fd`` when it is a regular file with a trusted owner and one name; else close it and
    raise UnsafePath."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(path, "not a regular file")
        problem = _owner_problem(info, "it")
        if problem:
            raise UnsafePath(path, problem)
        if info.st_nlink > 1:
            # a hard link to some other file (/etc/shadow) planted under this name
            raise UnsafePath(path, f"has {info.st_nlink} hard links; ptfast writes only to a "
                                   "file with one name")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a file ptfast owns: never through a symlink, never blocking on a FIFO,
    and only a regular, root-owned file with one name. Raises OSError (UnsafePath)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, "is a symbolic link; ptfast does not follow one here") \
                from None
        raise
    return _checked_fd(fd, path)


def read_regular_file(path: str, max_bytes: int, follow_symlinks: bool = True) -> bytes:
    """The content of ``path``, which must be a regular file of at most ``max_bytes`` (no FIFO
    to hang on, no /dev/zero to fill memory; /dev/null reads as empty). Raises OSError with a
    reason in ``strerror``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == NULL_DEVICE:
            return b""          # --config /dev/null: no file, the defaults
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_type(info.st_mode)})", path)
        return _read_bounded(fd, path, max_bytes)
    finally:
        os.close(fd)


def read_private_file(path: str, max_bytes: int) -> bytes:
    """The content of a file ptfast itself wrote (``open_private``'s checks), of at most
    ``max_bytes``. Raises OSError (UnsafePath when someone else planted it)."""
    fd = open_private(path, os.O_RDONLY)
    try:
        return _read_bounded(fd, path, max_bytes)
    finally:
        os.close(fd)


def _read_bounded(fd: int, path: str, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while size <= max_bytes:
        chunk = os.read(fd, max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", path)
    return b"".join(chunks)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a file"


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: readers see the old content or the new, never a mix.

    The temporary file has a random name and is created with O_EXCL (``mkstemp``): nothing
    planted in the directory (a symlink, a FIFO) is ever opened or truncated.
    """
    # here, not at the top: tempfile brings shutil, random, bz2 and lzma (a tenth of a scan's
    # imports), and only the writers need it
    import tempfile
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                     dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)   # make the rename itself durable
    finally:
        os.close(dir_fd)
