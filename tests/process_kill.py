"""Find and kill the process behind a TCP client port (crash tests kill the sender mid-request)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _socket_inodes(port: int) -> set[str]:
    """Inodes of the loopback TCP sockets whose local port is `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                found.add(fields[9])
    return found


def pid_of_client_port(port: int, candidates: list[int] | None = None) -> int | None:
    """The process holding the TCP socket whose local port is `port` (among `candidates`, else all)."""
    inodes = {f"socket:[{inode}]" for inode in _socket_inodes(port)}
    if not inodes:
        return None
    pids = candidates or [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
        except OSError:
            continue
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill(pid: int) -> None:
    """SIGKILL `pid` (no chance to record anything)."""
    os.kill(pid, signal.SIGKILL)
