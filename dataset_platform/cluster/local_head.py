"""A Ray head on this machine, every process on 127.0.0.1, started and stopped as one unit (the
tests' and the benchmarks' cluster, or a laptop's).

``ray stop`` stops every Ray process of the machine, a cluster someone else started included;
:meth:`LocalHead.stop` stops only the processes of this head: those that name its temp folder or
its ports, and their children. Nothing here imports Ray (the ``ray`` command is run).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: the environment every process of a local head needs: no usage reports, and 127.0.0.1 kept as
#: the node's address (Ray swaps it for the outward one otherwise)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_cli() -> str:
    return shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalHead:
    address: str  # the head's GCS (127.0.0.1:port)
    jobs: str | None  # its job API (http://127.0.0.1:port), when started with it
    temp: Path
    ports: tuple[int, ...]

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``, to this head's processes only; its temp folder
        removed."""
        own, children = set(), {}
        marks = [str(self.temp).encode(), *(f"127.0.0.1:{p}".encode() for p in self.ports)]
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes()
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
            if any(m in argv for m in marks):
                own.add(int(d.name))
        todo = list(own)
        while todo:
            for c in children.get(todo.pop(), []):
                if c not in own:
                    own.add(c)
                    todo.append(c)
        own.discard(os.getpid())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in own:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in own):
                time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)


def start_head(cpus: int, temp: Path, *, jobs: bool = False, env: dict | None = None,
               timeout_s: float = 180) -> LocalHead:
    """``ray start --head`` with ``cpus`` CPUs on 127.0.0.1 and free ports (with the job API when
    ``jobs``); ``temp`` is Ray's temp folder (keep its path short: Ray's socket paths must be)."""
    port, dashboard, client = free_port(), free_port(), free_port()
    # the node's agents on ports of their own too: Ray's fixed defaults (the dashboard agent's 52365)
    # would make a second head on this machine start without a job agent
    agent, agent_grpc, runtime_env, metrics = free_port(), free_port(), free_port(), free_port()
    args = [ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
            f"--ray-client-server-port={client}", "--disable-usage-stats", f"--temp-dir={temp}",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"]
    if jobs:
        args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]
    else:
        args += ["--include-dashboard=false", f"--dashboard-port={dashboard}"]
    head = LocalHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}" if jobs else None, Path(temp),
                     (port, dashboard, client))
    # the head's processes keep their temporary files in its temp folder, which ``stop`` removes:
    # Ray's dashboard starts a multiprocessing forkserver, whose folder (pymp-*) a stopped head
    # otherwise leaves in /tmp, one per head
    Path(temp).mkdir(parents=True, exist_ok=True)
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s,
                       env={**(env or os.environ), **RAY_ENV, "TMPDIR": str(temp)})
    if r.returncode != 0:
        head.stop()
        raise RuntimeError(f"ray start --head failed: {r.stdout[-1500:]}{r.stderr[-1500:]}")
    return head
