"""Writing files and folders atomically: a reader sees the old version or the new one, never half of one.

Every write goes to a temporary sibling with a unique name (two runs writing the same target never share a
staging file) and is renamed into place once complete; an error or an interruption removes the staging copy.

Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "units.json"
    >>> atomic_write_text(target, "{}")
    >>> target.read_text()
    '{}'
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside ``path`` to write to; it replaces ``path`` when the block ends cleanly.

    Args:
        path: the file to (re)write.

    Example:
        >>> with atomic_file(Path(tempfile.mkdtemp()) / "v.bin") as tmp:
        ...     _ = tmp.write_bytes(b"data")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        yield Path(staging)
        os.chmod(staging, 0o666 & ~_umask())  # mkstemp makes it private; give it the permissions open() would
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) atomically.

    Args:
        path: the file.
        text: its new content.

    Example:
        >>> atomic_write_text(Path(tempfile.mkdtemp()) / "a.txt", "hello")
    """
    with atomic_file(path) as staging:
        staging.write_text(text, encoding="utf-8")


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """A unique temporary folder beside ``folder`` to fill; it replaces ``folder`` when the block ends cleanly.

    Args:
        folder: the folder to (re)write.

    Example:
        >>> with atomic_folder(Path(tempfile.mkdtemp()) / "index") as staging:
        ...     _ = (staging / "index.json").write_text("{}")
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; give it the permissions mkdir() would
        if folder.exists():  # moved aside first: a rename onto a non-empty folder fails
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
            folder.rename(old / folder.name)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
