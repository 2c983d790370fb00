"""Processes the local stack starts, and stopping exactly those.

Each process is started as the leader of a new session, and recorded (PID and kernel start time,
so a recycled PID is never mistaken for ours) under ``<state dir>/pids/``. Stopping signals the
leader's process group and every descendant found through /proc (``cargo lambda watch`` runs the
function under ``cargo run`` in process groups of its own), waits, then kills what is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable


def free_ports(count: int, taken: Iterable[int] = ()) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 for TCP and UDP alike, none of them ``taken``.
    Every socket stays bound until all are chosen, so no port is handed out twice; another program
    may still take one before its process binds it (the emulator binds port 0 instead)."""
    taken = set(taken)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held += [tcp, udp]
            tcp.bind(("127.0.0.1", 0))
            try:
                udp.bind(("127.0.0.1", tcp.getsockname()[1]))
            except OSError:
                continue  # taken for UDP; the TCP socket stays bound, so it is not offered again
            if tcp.getsockname()[1] not in taken:
                ports.append(tcp.getsockname()[1])
        return ports
    finally:
        for sock in held:
            sock.close()


def port_in_use(port: int, udp: bool = False) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses.
    return [raw[: raw.index(" ")]] + ["comm"] + raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[21] if fields else None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[2] != "Z"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[3]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


class Processes:
    def __init__(self, state_dir: Path):
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "wb", buffering=0)
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        record = {"name": name, "pid": process.pid, "start_time": start_time(process.pid), "argv": argv}
        (self.pid_dir / f"{name}.json").write_text(json.dumps(record))
        return process.pid

    def records(self) -> list[dict]:
        if not self.pid_dir.exists():
            return []
        out = []
        for path in sorted(self.pid_dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def running(self) -> list[dict]:
        return [r for r in self.records() if alive(r["pid"]) and start_time(r["pid"]) == r.get("start_time")]

    def stop(self, timeout: float = 10.0, keep: Iterable[int] = ()) -> list[str]:
        """Stops every recorded process and its descendants; returns the names stopped."""
        keep = set(keep)
        targets: dict[int, str] = {}
        groups: list[int] = []
        for record in self.running():
            pid = record["pid"]
            if pid in keep:
                continue
            groups.append(pid)
            targets[pid] = record["name"]
            for child in descendants(pid):
                if child not in keep:
                    targets.setdefault(child, record["name"])
        for pid in groups:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in targets:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while time.time() < deadline and any(alive(pid) for pid in targets):
            time.sleep(0.1)
        for pid in targets:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in groups:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for record in self.records():
            if record["pid"] not in keep:
                (self.pid_dir / f"{record['name']}.json").unlink(missing_ok=True)
        return sorted(set(targets.values()))
