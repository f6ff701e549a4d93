"""Publish the site's JSON files into a directory, each atomically, the whole set all-or-nothing.

Every changed file is first written (and fsynced) into a fresh staging directory inside the
target directory, so nothing visible changes until every byte is on disk; files whose content
is already current are left untouched. The staged files are then
moved into place with `os.replace`, one atomic rename each. The previous files are hard-linked
aside first: if a rename fails part-way, the renamed ones are put back, so a failed export
leaves the previous set whole. Plan files of cities no longer exported are removed last.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from choosemypower_dagster.settings import EXPORT_DIR

try:  # POSIX: serialize concurrent exports into the same directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STAGING_PREFIX = ".staging-"
BACKUP_PREFIX = ".previous-"
LOCK_NAME = ".site-export.lock"
#: Leftover staging/backup directories older than this (a killed export) are removed.
ABANDONED_AFTER_S = 3600.0


class ExportError(RuntimeError):
    """The export could not be published; the previous files are left as they were."""


@dataclass
class PublishResult:
    """What a publish wrote, in the directory it wrote to."""

    directory: Path
    files: int = 0  # files in the export
    bytes: int = 0  # their total size
    written: int = 0  # files whose content changed (the others were left untouched)
    removed: list[str] = field(default_factory=list)


def resolve_export_dir(configured: str | None = None) -> Path:
    """The export directory: `configured`, else `CHOOSEMYPOWER_EXPORT_DIR`, else the default.

    Relative paths are taken from the working directory.
    """
    raw = configured or EXPORT_DIR.value() or str(EXPORT_DIR.default)
    return Path(raw).expanduser().absolute()


def _unwritable(directory: Path, exc: BaseException) -> ExportError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return ExportError(
        f"cannot write the site export to {directory} (set by {EXPORT_DIR.name}, "
        f"default {EXPORT_DIR.default}): {reason}"
    )


def _unchanged(path: Path, data: bytes) -> bool:
    """True when `path` already holds exactly `data` (nothing to write or rename)."""
    try:
        if path.stat().st_size != len(data) or not path.is_file():
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _write_synced(path: Path, data: bytes) -> None:
    """Create `path` with `data` and fsync it, so a rename never exposes a partial file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Persist the renames in `directory` (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_abandoned(directory: Path) -> None:
    """Delete staging/backup directories a killed export left behind (older than an hour)."""
    cutoff = time.time() - ABANDONED_AFTER_S
    for entry in directory.iterdir():
        if entry.name.startswith((STAGING_PREFIX, BACKUP_PREFIX)) and entry.is_dir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the directory's lock file for the whole publish."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unwritable(directory, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"not a plain file name for the export: {name!r}")


def publish(
    directory: Path,
    files: Mapping[str, bytes],
    stale_pattern: str | None = "plans-*.json",
    last: tuple[str, ...] = ("build-summary.json",),
) -> PublishResult:
    """Replace `files` in `directory` all-or-nothing; delete other `stale_pattern` files after.

    Files named in `last` are renamed after all others, so their presence marks a complete set.
    Raises `ExportError` (naming the directory and `CHOOSEMYPOWER_EXPORT_DIR`) with the
    previous files left in place when anything fails.
    """
    for name in files:
        _check_name(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} is not a directory")
    except OSError as exc:
        raise _unwritable(directory, exc) from exc

    result = PublishResult(
        directory=directory, files=len(files), bytes=sum(len(d) for d in files.values())
    )
    with _exclusive(directory):
        _remove_abandoned(directory)
        changed = {n: d for n, d in files.items() if not _unchanged(directory / n, d)}
        try:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory))
        except OSError as exc:
            raise _unwritable(directory, exc) from exc
        backup: Path | None = None
        try:
            for name, data in changed.items():
                _write_synced(staging / name, data)
            _fsync_dir(staging)
            backup = _link_previous(directory, changed)
            order = [n for n in sorted(changed) if n not in last]
            order += [n for n in last if n in changed]
            _swap_in(directory, staging, backup, order)
            _fsync_dir(directory)
            result.written = len(order)
        except ExportError:
            raise
        except OSError as exc:
            raise ExportError(
                f"site export to {directory} ({EXPORT_DIR.name}) failed before any file was "
                f"replaced; the previous files are unchanged: {exc}"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        if stale_pattern:
            result.removed = _remove_stale(directory, files, stale_pattern)
    return result


def _link_previous(directory: Path, files: Mapping[str, bytes]) -> Path | None:
    """Hard-link the current versions of `files` aside, for a rollback (None if unsupported)."""
    backup = Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=directory))
    try:
        for name in files:
            current = directory / name
            if current.is_file():
                os.link(current, backup / name)
    except OSError:
        shutil.rmtree(backup, ignore_errors=True)
        return None
    return backup


def _swap_in(directory: Path, staging: Path, backup: Path | None, order: list[str]) -> None:
    """Rename the staged files into place; on a failure, undo the renames already made."""
    done: list[str] = []
    name = ""
    try:
        for name in order:
            os.replace(staging / name, directory / name)
            done.append(name)
    except OSError as exc:
        restored = _roll_back(directory, backup, done)
        state = (
            "the previous files were restored"
            if restored
            else f"{len(done)} file(s) were already replaced and could not be restored"
        )
        raise ExportError(
            f"site export to {directory} ({EXPORT_DIR.name}) failed while replacing "
            f"{directory / name}: {exc.strerror or exc}; {state}"
        ) from exc


def _roll_back(directory: Path, backup: Path | None, done: list[str]) -> bool:
    """Put back the previous version of each name in `done`; True when all were restored."""
    if backup is None and done:
        return False
    ok = True
    for name in reversed(done):
        try:
            previous = backup / name if backup is not None else None
            if previous is not None and previous.exists():
                os.replace(previous, directory / name)
            else:
                os.unlink(directory / name)  # it did not exist before this export
        except OSError:
            ok = False
    return ok


def _remove_stale(directory: Path, files: Mapping[str, bytes], pattern: str) -> list[str]:
    """Delete files matching `pattern` that this export no longer writes (e.g. dropped cities)."""
    removed = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name in files or not fnmatch.fnmatch(entry.name, pattern):
            continue
        if entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry.name)
    return removed
