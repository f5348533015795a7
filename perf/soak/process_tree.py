"""A process and its descendants, read from /proc: who they are and how much memory they hold.

tritonserver runs each python-backend model instance in a stub process of its own, so the
server's memory is the sum over its process tree. RSS is read from ``/proc/<pid>/status``
(``VmRSS``, kibibytes); processes that exit while being read are skipped. Linux only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

PROC = Path("/proc")


def _parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ...", where comm may itself hold spaces and parentheses
    text = (PROC / str(pid) / "stat").read_text()
    return int(text.rsplit(")", 1)[1].split()[1])


def children_map() -> Dict[int, List[int]]:
    """parent pid -> its children's pids, for every process now running."""
    children: Dict[int, List[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(_parent_of(int(entry.name)), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
    return children


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (children, their children, ...), in breadth-first order."""
    children, found, queue = children_map(), [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def command_name(pid: int) -> str:
    """The process's short name (``/proc/<pid>/comm``), or '' if it has exited."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    """The resident set size of one process in bytes (0 if it has exited)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class TreeMemory:
    """RSS of a process tree at one moment: the total and each process's (pid, name, bytes)."""

    total_bytes: int
    processes: Tuple[Tuple[int, str, int], ...]

    def describe(self) -> str:
        parts = ", ".join(f"{name}[{pid}] {size / 2**20:.0f} MiB" for pid, name, size in self.processes)
        return f"{self.total_bytes / 2**20:.0f} MiB ({parts})"


def tree_memory(pid: int) -> TreeMemory:
    """RSS of ``pid`` and all its descendants (tritonserver and its python stubs)."""
    processes = tuple((p, command_name(p), rss_bytes(p)) for p in [pid, *descendants(pid)])
    return TreeMemory(total_bytes=sum(size for _, _, size in processes), processes=processes)
