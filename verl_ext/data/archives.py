"""Reading images straight out of a split zip archive (``name.zip.001``, ``name.zip.002`` ...), no extraction.

PadChest-GR ships its PNGs as ``Padchest_GR_files/PadChest_GR.zip.001`` ... ``.037``: byte-for-byte pieces of one
ordinary zip file cut for download (each part is a slice; concatenating them gives the zip). `ConcatReader` shows
the parts as one seekable stream, so Python's `zipfile` reads the central directory at the end and then any
member, touching only the bytes it needs. A single ``.zip`` (one part) works the same way.
"""
from __future__ import annotations

import bisect
import glob
import io
import os
import re
import zipfile
from collections.abc import Sequence


class ConcatReader(io.RawIOBase):
    """Read-only, seekable view of several files laid end to end."""

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self.paths = list(paths)
        self.starts = [0]
        for p in self.paths:
            self.starts.append(self.starts[-1] + os.path.getsize(p))
        self.size = self.starts[-1]
        self.pos = 0
        self._open: tuple[int, io.BufferedReader] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.size:
            part = bisect.bisect_right(self.starts, self.pos) - 1
            if self._open is None or self._open[0] != part:
                if self._open is not None:
                    self._open[1].close()
                self._open = (part, open(self.paths[part], "rb"))  # noqa: SIM115
            fh = self._open[1]
            fh.seek(self.pos - self.starts[part])
            n = fh.readinto(view[done: done + min(len(view) - done, self.starts[part + 1] - self.pos)])
            if not n:
                break
            done += n
            self.pos += n
        return done

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        super().close()


_PART = re.compile(r"\.zip\.(\d+)$", re.IGNORECASE)


def split_zip_sets(root: str | os.PathLike) -> list[tuple[str, ...]]:
    """Every split zip under `root` as its ordered tuple of part paths (``x.zip.001``, ``x.zip.002`` ...)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for path in glob.glob(os.path.join(str(root), "**", "*.zip.*"), recursive=True):
        m = _PART.search(path)
        if m:
            groups.setdefault(path[: m.start()] + ".zip", []).append((int(m.group(1)), path))
    return [tuple(p for _, p in sorted(parts)) for _, parts in sorted(groups.items())]


def missing_parts(parts: Sequence[str]) -> list[int]:
    """Part numbers absent from a numbered sequence starting at 1 (a partial download)."""
    numbers = sorted(int(_PART.search(p).group(1)) for p in parts)
    return sorted(set(range(1, numbers[-1] + 1)) - set(numbers)) if numbers else []


def open_zip(parts: Sequence[str]) -> zipfile.ZipFile:
    """A `zipfile.ZipFile` over the concatenation of `parts`; `zipfile.BadZipFile` when it is not one zip."""
    return zipfile.ZipFile(ConcatReader(parts) if len(parts) > 1 else parts[0])


_OPEN: dict[tuple[str, ...], zipfile.ZipFile] = {}


def read_member(parts: tuple[str, ...], member: str) -> bytes:
    """Bytes of `member` of the (split) zip `parts`; archives stay open per process (workers reuse them)."""
    zf = _OPEN.get(parts)
    if zf is None:
        zf = _OPEN[parts] = open_zip(parts)
    return zf.read(member)
