"""`colorize cluster up|status|down`: a multi-node Ray cluster on 127.0.0.1 with token auth
(colorize/distributed/local_cluster.py starts and stops it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from colorize.cli.options import positive
from colorize.distributed import local_cluster
from colorize.distributed.local_cluster import (
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    LocalCluster,
    down,
    up,
)


def _print_status(cluster: LocalCluster) -> None:
    """Each node of the cluster, from the dashboard's REST API (with the token); any error
    talking to it (down, refusing the token, an HTTP error) is one line (jobs.cluster_errors)."""
    import requests

    from colorize.distributed.jobs import cluster_errors

    headers = {"Authorization": f"Bearer {cluster.token()}"}
    with cluster_errors(cluster.dashboard_url):
        reply = requests.get(f"{cluster.dashboard_url}/api/v0/nodes", headers=headers, timeout=10)
        reply.raise_for_status()
        nodes = reply.json()["data"]["result"]["result"]
    for node in nodes:
        role = "head" if node.get("is_head_node") else "worker"
        print(f"{node['node_id'][:12]}  {role:6}  {node['state']:6}  {node['node_ip']}")


def _cmd_cluster(args: argparse.Namespace) -> int:
    if args.action == "up":
        cluster = up(args.dir, args.workers, args.cpus, args.base_port, args.object_store_mb)
        print(f"dashboard: {cluster.dashboard_url}  (token in {cluster.token_path})")
        print("for `colorize submit` and `colorize jobs`, run:")
        for key, value in cluster.env().items():
            print(f"  export {key}={value}")
    elif args.action == "down":
        print(f"stopped {down(args.dir)} processes")
    else:
        _print_status(LocalCluster.load(args.dir))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cluster", help="a multi-node Ray cluster on 127.0.0.1 with token auth: up, status, down",
        description=local_cluster.__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("up", "down", "status"),
                   help="up: start the head and --workers worker nodes; status: list the nodes; "
                   "down: stop exactly what `up` started")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                   help=f"state folder (token, logs) (default {DEFAULT_DIR})")
    p.add_argument("--workers", type=positive(int, allow_zero=True), default=1,
                   help="worker nodes beside the head (default 1)")
    p.add_argument("--cpus", type=positive(int), default=1, help="CPUs each node offers (default 1)")
    p.add_argument("--base-port", type=positive(int), default=DEFAULT_BASE_PORT,
                   help="the head's GCS port; the other ports are counted from it (default "
                   f"{DEFAULT_BASE_PORT})")
    p.add_argument("--object-store-mb", type=positive(int), default=256,
                   help="object store memory of each node, in MiB (default 256)")
    p.set_defaults(func=_cmd_cluster)
