"""Walk library roots: media files by extension, with excludes and loop safety.

Directories are pruned as early as possible (hidden ones, exclude globs), so a
NAS's `@eaDir` thumbnail trees are never even listed. Every directory is
identified by (device, inode) before it is entered, which makes symlink loops
and bind mounts harmless: nothing is visited twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FoundFile:
    path: str
    kind: str  # image | video, by extension
    size: int
    mtime_ns: int


@dataclass
class WalkProblems:
    """What could not be walked; never fatal, reported in the scan summary."""

    messages: list[str] = field(default_factory=list)


def glob_to_regex(pattern: str) -> str:
    """Translate a path glob: `**` spans folders, `*` and `?` stay inside one."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


class Excluder:
    """Matches paths relative to a root against all exclude globs at once."""

    def __init__(self, patterns: Sequence[str]) -> None:
        parts = [glob_to_regex(p.lstrip("/")) for p in patterns]
        self._regex = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None

    def file(self, rel: str) -> bool:
        return bool(self._regex and self._regex.fullmatch(rel))

    def folder(self, rel: str) -> bool:
        # "a/@eaDir/" matches "**/@eaDir/**": everything inside would be excluded.
        return bool(self._regex and self._regex.fullmatch(rel + "/"))


class Walker:
    def __init__(
        self,
        image_exts: Sequence[str],
        video_exts: Sequence[str],
        exclude: Sequence[str],
        include_hidden: bool = False,
        follow_symlinks: bool = True,
    ) -> None:
        self.kinds = {e: "image" for e in image_exts} | {e: "video" for e in video_exts}
        self.excluder = Excluder(exclude)
        self.include_hidden = include_hidden
        self.follow = follow_symlinks
        self.problems = WalkProblems()

    def kind_of(self, name: str) -> str | None:
        dot = name.rfind(".")
        return self.kinds.get(name[dot + 1 :].lower()) if dot > 0 else None

    def walk(self, root: str) -> Iterator[FoundFile]:
        """Media files under `root` (a folder or a single file)."""
        if os.path.isfile(root):
            yield from self._single(root)
            return
        seen: set[tuple[int, int]] = set()
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
            except OSError as exc:
                self.problems.messages.append(f"{folder}: cannot enter: {exc.strerror}")
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue  # a symlink loop or a second way into the same folder
            seen.add((st.st_dev, st.st_ino))
            yield from self._list(root, folder, stack)

    def _single(self, path: str) -> Iterator[FoundFile]:
        kind = self.kind_of(os.path.basename(path))
        if kind:
            st = os.stat(path)
            yield FoundFile(path, kind, st.st_size, st.st_mtime_ns)

    def _list(self, root: str, folder: str, stack: list[str]) -> Iterator[FoundFile]:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            self.problems.messages.append(f"{folder}: cannot list: {exc.strerror}")
            return
        prefix = len(root.rstrip("/")) + 1
        for entry in entries:
            name = entry.name
            if name.startswith(".") and not self.include_hidden:
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=self.follow)
            except OSError:
                continue
            rel = entry.path[prefix:]
            if is_dir:
                if not self.excluder.folder(rel):
                    stack.append(entry.path)
                continue
            kind = self.kind_of(name)
            if kind is None or self.excluder.file(rel):
                continue
            if entry.is_symlink() and not self.follow:
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                self.problems.messages.append(f"{entry.path}: broken link or vanished")
                continue
            yield FoundFile(entry.path, kind, st.st_size, st.st_mtime_ns)
