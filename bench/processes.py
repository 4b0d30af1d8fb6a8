"""The process tree of this machine read from /proc: what the benchmarks sum CPU time and memory over."""
from __future__ import annotations

import os


def children_by_parent() -> dict[int, list[int]]:
    """Every running process's children, by parent pid (processes that end while read are left out)."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.setdefault(parent, []).append(int(entry))
    return out


def descendants(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """``root``'s children, their children and so on (not ``root`` itself)."""
    children = children_by_parent() if children is None else children
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found
