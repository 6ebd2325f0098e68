"""Reading and replacing a file under an allowed root, never through a symlink out of it.

A path is checked once and then opened component by component from its allowed root with
O_NOFOLLOW, so a symlink swapped in after the check makes the open fail instead of leading
elsewhere. What was read is remembered by identity (device, inode, size, mtime) and digest:
a later re-read and the write-back go ahead only while the file is still that one.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3

from bridge_dagster.onextree.errors import NotAFile, TreeError
from bridge_dagster.onextree.roots import resolve_allowed_file

_READ_CHUNK = 1 << 20


class FileChanged(TreeError):
    """The file is no longer the one that was checked or read."""


class FileTooLarge(TreeError):
    """The file holds more bytes than the limit, however small it was when checked."""


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class RootedFile:
    """A file as it was read: where it lies under its root, what it was, and its digest."""

    root: Path
    parts: tuple[str, ...]
    identity: FileIdentity
    digest: str

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)


def read_rooted_file(
    path: str | os.PathLike[str], allowed_roots: Sequence[Path], max_bytes: int
) -> tuple[bytes, RootedFile]:
    """The bytes of `path`, read once through a descriptor opened beneath its allowed root."""
    resolved = resolve_allowed_file(path, allowed_roots)
    root = next(r for r in (Path(a).resolve() for a in allowed_roots) if resolved.is_relative_to(r))
    checked = FileIdentity.of(resolved.stat())
    parts = resolved.relative_to(root).parts
    data, identity = _read_beneath(root, parts, max_bytes)
    if (identity.device, identity.inode) != (checked.device, checked.inode):
        raise FileChanged(f"{resolved} was replaced between its check and its opening")
    return data, RootedFile(root, parts, identity, blake3.blake3(data).hexdigest())


def reread_rooted_file(file: RootedFile, max_bytes: int) -> bytes:
    """The same bytes as the first read, or FileChanged when the file is another one now."""
    data, identity = _read_beneath(file.root, file.parts, max_bytes)
    if identity != file.identity or blake3.blake3(data).hexdigest() != file.digest:
        raise FileChanged(f"{file.path} changed after it was first read")
    return data


def replace_rooted_file(file: RootedFile, data: bytes) -> None:
    """Replace the file atomically with `data` if it is still the one that was read."""
    directory = _open_beneath(file.root, file.parts[:-1], directory=True)
    name = file.parts[-1]
    # Beside the target, so the rename is atomic: a reader sees the old or the new file.
    staged = f".{name}.{uuid.uuid4().hex}.stamping"
    try:
        current = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if FileIdentity.of(current) != file.identity:
            raise FileChanged(f"{file.path} changed after it was read, so it is left as it is")
        fd = os.open(
            staged,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            stat.S_IMODE(current.st_mode),
            dir_fd=directory,
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            os.unlink(staged, dir_fd=directory)
            raise
    finally:
        os.close(directory)


def _read_beneath(root: Path, parts: tuple[str, ...], max_bytes: int) -> tuple[bytes, FileIdentity]:
    fd = _open_beneath(root, parts, directory=False)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise NotAFile(f"{root.joinpath(*parts)} is not a regular file; pass a file")
        data = _read_at_most(fd, max_bytes + 1)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    path = root.joinpath(*parts)
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"{path} holds more than {max_bytes:,} bytes (it grew after its size check, or is"
            " simply too large); raise BRIDGE_MAX_CONTENT_BYTES to stamp it"
        )
    identity = FileIdentity.of(after)
    if identity != FileIdentity.of(before) or identity.size != len(data):
        raise FileChanged(f"{path} changed while it was read")
    return data, identity


def _open_beneath(root: Path, parts: tuple[str, ...], *, directory: bool) -> int:
    """A descriptor for root/parts, opened without following a symlink at any component."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            if directory or not last:
                flags |= os.O_DIRECTORY
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FileChanged(
                        f"{root.joinpath(*parts[: index + 1])} became a symlink (or stopped being"
                        " a directory) after the path was checked; it is not followed"
                    ) from exc
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(_READ_CHUNK, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
