"""A Ray cluster of several nodes on this machine, all on 127.0.0.1, with token auth.

For trying `colorize submit` against a real multi-node cluster, and for the cluster tests:

    colorize cluster up [--workers 1] [--cpus 1] [--base-port 36100] [--dir DIR]
    colorize cluster status [--dir DIR]
    colorize cluster down [--dir DIR]

(`scripts/local-cluster ARGS` is the same from a clone.) Every node runs the interpreter that
runs this command (`sys.executable`), so any environment colorize is installed in works.

`up` starts a head node and worker nodes with `ray start --block`, each in its own process
session, on ports counted from --base-port (never Ray's defaults, so it does not collide with
another Ray on this machine), with `RAY_AUTH_MODE=token` and a fresh token in DIR/auth_token.
It records what it started in DIR/cluster.json. `down` stops exactly those processes (the
`ray start` leaders, their descendants and their sessions), never another Ray instance.

Ray on Linux swaps 127.0.0.1 for the machine's routable address when nodes start
(ray-project/ray#59110), so the nodes run with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which
keeps every Ray process on the loopback address, and a worker node's `ray start` is run
through `_ray_start()` below, which lets it join although that variable is off.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from colorize.errors import ColorizeError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 36100
DEFAULT_DIR = Path(tempfile.gettempdir()) / "colorize-cluster"
START_TIMEOUT_S = 90
MAX_SOCKET_DIR = 30  # Ray's unix sockets live under the temp dir; paths must stay < 108 chars


@dataclass
class NodeProcess:
    """One `ray start --block` leader: its pid, start time (guards against pid reuse), log."""

    name: str
    pid: int
    create_time: float
    log: str


@dataclass
class LocalCluster:
    """What `up` started: enough for `down` and for clients (`env()`)."""

    state_dir: str
    gcs_address: str
    dashboard_url: str
    token_path: str
    ray_temp_dir: str
    nodes: list[NodeProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The variables a client needs: where the Jobs API is and where the token is."""
        return {"RAY_API_SERVER_ADDRESS": self.dashboard_url, "RAY_AUTH_TOKEN_PATH": self.token_path}

    def token(self) -> str:
        return Path(self.token_path).read_text().strip()

    def save(self) -> None:
        Path(self.state_dir, "cluster.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: str | Path) -> LocalCluster:
        path = Path(state_dir) / "cluster.json"
        if not path.is_file():
            raise ColorizeError(f"no local cluster recorded in {state_dir} (start one with `up`)")
        values = json.loads(path.read_text())
        values["nodes"] = [NodeProcess(**n) for n in values["nodes"]]
        return cls(**values)


def node_ports(base_port: int, index: int) -> dict[str, int]:
    """Ports of node `index` (0 = head): 10 per node from base+10, 100 worker ports each."""
    first = base_port + 10 * (index + 1)
    return {
        "node-manager-port": first,
        "object-manager-port": first + 1,
        "dashboard-agent-listen-port": first + 2,
        "dashboard-agent-grpc-port": first + 3,
        "runtime-env-agent-port": first + 4,
        "metrics-export-port": first + 5,
        "min-worker-port": base_port + 100 * (index + 1),
        "max-worker-port": base_port + 100 * (index + 1) + 99,
    }


def up(
    state_dir: str | Path = DEFAULT_DIR,
    workers: int = 1,
    cpus: int = 1,
    base_port: int = DEFAULT_BASE_PORT,
    object_store_mb: int = 256,
) -> LocalCluster:
    """Start a head and `workers` worker nodes on 127.0.0.1; wait until all have joined."""
    state_dir = Path(state_dir).resolve()
    if (state_dir / "cluster.json").is_file() and _alive(LocalCluster.load(state_dir)):
        raise ColorizeError(f"a local cluster from {state_dir} is running: run `down` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    _check_ports_free(base_port, workers)
    token_path = state_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    ray_temp = state_dir / "ray"
    if len(str(ray_temp)) > MAX_SOCKET_DIR:
        ray_temp = Path(tempfile.mkdtemp(prefix="clz-ray-", dir="/tmp"))
    cluster = LocalCluster(
        state_dir=str(state_dir),
        gcs_address=f"{HOST}:{base_port}",
        dashboard_url=f"http://{HOST}:{base_port + 1}",
        token_path=str(token_path),
        ray_temp_dir=str(ray_temp),
    )
    common = ["--block", "--num-gpus", "0", "--disable-usage-stats",
              "--object-store-memory", str(object_store_mb * 2**20), "--num-cpus", str(cpus),
              "--log-style", "record", "--log-color", "false"]
    head = ["--head", "--node-ip-address", HOST, "--port", str(base_port),
            "--include-dashboard", "true", "--dashboard-host", HOST,
            "--dashboard-port", str(base_port + 1), "--ray-client-server-port", str(base_port + 2)]
    try:
        for index in range(workers + 1):
            role = head if index == 0 else ["--address", cluster.gcs_address, "--node-ip-address", HOST]
            ports = [f"--{k}={v}" for k, v in node_ports(base_port, index).items()]
            name = "head" if index == 0 else f"worker-{index}"
            # One temp dir per node, as on separate machines: a node's runtime-env agent
            # deletes unused working_dirs in its own folder, never under another node's jobs.
            temp = ["--temp-dir", str(ray_temp / name)]
            cluster.nodes.append(_start_node(cluster, name, role + ports + temp + common))
            cluster.save()
            _wait_for_nodes(cluster, index + 1)
    except BaseException:
        stop(cluster, grace_s=5)
        raise
    log.info("local cluster up: %d nodes, dashboard %s", workers + 1, cluster.dashboard_url)
    return cluster


def down(state_dir: str | Path = DEFAULT_DIR, grace_s: float = 15.0) -> int:
    """Stop exactly the processes `up` started (workers first, head last); returns how many."""
    return stop(LocalCluster.load(state_dir), grace_s)


def stop(cluster: LocalCluster, grace_s: float = 15.0) -> int:
    stopped = sum(_stop_node(node, grace_s) for node in reversed(cluster.nodes))
    Path(cluster.state_dir, "cluster.json").unlink(missing_ok=True)
    return stopped


def cluster_env(cluster: LocalCluster) -> dict[str, str]:
    """Environment of every node: token auth on, Ray kept on loopback, this venv first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=cluster.token_path,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _start_node(cluster: LocalCluster, name: str, ray_args: list[str]) -> NodeProcess:
    import psutil

    log_path = Path(cluster.state_dir) / f"{name}.log"
    command = [sys.executable, "-m", "colorize.distributed.local_cluster", "_ray-start", *ray_args]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=cluster_env(cluster), start_new_session=True,  # own session: `down` finds it all
        )
    log.info("started %s (pid %d), log %s", name, process.pid, log_path)
    return NodeProcess(name, process.pid, psutil.Process(process.pid).create_time(), str(log_path))


def _wait_for_nodes(cluster: LocalCluster, count: int) -> None:
    """Poll the dashboard's REST API (with the token) until `count` nodes are alive."""
    import requests

    headers = {"Authorization": f"Bearer {cluster.token()}"}
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        for node in cluster.nodes:
            if not _leader(node):
                raise ColorizeError(f"{node.name} exited during start-up; see {node.log}:\n"
                                    + _tail(node.log))
        try:
            reply = requests.get(f"{cluster.dashboard_url}/api/v0/nodes", headers=headers, timeout=5)
            if reply.ok:
                alive = [n for n in reply.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]
                if len(alive) >= count:
                    return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(1)
    raise ColorizeError(f"the local cluster did not reach {count} nodes in {START_TIMEOUT_S} s; "
                        f"see the logs in {cluster.state_dir}")


def _leader(node: NodeProcess):
    """The recorded leader process if it still runs (same pid and start time), else None."""
    import psutil

    try:
        process = psutil.Process(node.pid)
        if abs(process.create_time() - node.create_time) < 1e-3 and process.status() != "zombie":
            return process
    except psutil.Error:
        pass
    return None


def _node_processes(node: NodeProcess) -> list:
    """The leader, its descendants, and every process still in its session."""
    import psutil

    leader = _leader(node)
    if leader is None:
        return []
    found = {leader.pid: leader}
    found.update({p.pid: p for p in leader.children(recursive=True)})
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == node.pid:
                found.setdefault(process.pid, process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


def _stop_node(node: NodeProcess, grace_s: float) -> int:
    """SIGTERM the leader (Ray drains and stops its processes), then SIGKILL what is left."""
    import psutil

    processes = _node_processes(node)
    if not processes:
        return 0
    try:
        os.kill(node.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    log.info("stopped %s: %d processes (%d killed)", node.name, len(processes), len(alive))
    return len(processes)


def _alive(cluster: LocalCluster) -> bool:
    return any(_leader(node) for node in cluster.nodes)


def _check_ports_free(base_port: int, workers: int) -> None:
    ports = [base_port, base_port + 1, base_port + 2]
    for index in range(workers + 1):
        ports += node_ports(base_port, index).values()
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                raise ColorizeError(
                    f"port {port} on {HOST} is in use: choose another --base-port"
                ) from None


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ray_start(argv: list[str]) -> None:
    """`ray start ARGS` that keeps 127.0.0.1 as given (see the module docstring and
    `ray_compat.ray_start_on_loopback`)."""
    from colorize.distributed import ray_compat

    ray_compat.ray_start_on_loopback(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m colorize.distributed.local_cluster _ray-start ARGS`: the node launcher that `up` runs.
    The command line is `colorize cluster up|status|down` (colorize/cli/cluster.py)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["_ray-start"]:
        print("usage: colorize cluster up|status|down [options] (this module only launches "
              "nodes: python -m colorize.distributed.local_cluster _ray-start RAY_START_ARGS)", file=sys.stderr)
        return 2
    _ray_start(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
