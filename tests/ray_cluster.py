"""A real two-node Ray cluster on this machine, for tests: `ray start --head` plus a second
`ray start --address ...` with its own resources, each its own process tree in its own temp dir.

Teardown ends only what these commands started (their process groups, then any process whose
command line names this cluster's temp dir or address, or whose environment holds this cluster's
own token); `ray stop` would end every Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwoNodeCluster:
    def __init__(self, cpus_per_node: int = 1, store_mb: int = 100) -> None:
        self.tmp = tempfile.mkdtemp(prefix="emray-", dir="/tmp")  # short: Ray's socket paths have a limit
        self.port = _free_port()
        from ray.util import get_node_ip_address

        self.address = f"{get_node_ip_address()}:{self.port}"  # the IP Ray binds to; loopback is not used
        # Token authentication as Ray 2.60 defaults to, with this cluster's own token (no shared file).
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
                    "RAY_USAGE_STATS_ENABLED": "0", **self.auth}
        self.procs: list[subprocess.Popen] = []
        common = ["--num-cpus", str(cpus_per_node), "--object-store-memory", str(store_mb * 2**20),
                  "--disable-usage-stats", "--block"]
        try:
            self._start("head", [RAY, "start", "--head", "--port", str(self.port), "--include-dashboard=false", "--temp-dir", self.tmp, *common])
            self._wait_nodes(1)
            self._start("worker", [RAY, "start", "--address", self.address,
                                   "--resources", '{"second_node": 1}', *common])
            self._wait_nodes(2)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(Path(self.tmp) / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def _wait_nodes(self, n: int, timeout: float = 120) -> None:
        code = ("import ray; ray.init(address=%r, include_dashboard=False, log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))" % self.address)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}); see {self.tmp}/*.log")
            out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                                 timeout=120)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(1)
        raise RuntimeError(f"Ray cluster did not reach {n} nodes; see {self.tmp}/*.log")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:  # Ray drains up to 30 s on SIGTERM; a test cluster has nothing to keep
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for pid in self._leftovers():  # anything that left the process groups but names our temp dir
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _leftovers(self) -> list[int]:
        mine = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            # Ray renames its workers (ray::...), but they inherit this cluster's own token.
            if self.tmp.encode() in cmdline or (self.address.encode() in cmdline and b"ray" in cmdline) \
                    or f"RAY_AUTH_TOKEN={self.auth['RAY_AUTH_TOKEN']}".encode() in environ.split(b"\0"):
                mine.append(int(entry.name))
        return mine
