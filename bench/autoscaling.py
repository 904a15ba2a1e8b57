"""Serve autoscaling on the loopback cluster: replica count over time, throughput at 1 and 2.

Starts `colorize cluster up`'s two-node cluster on 127.0.0.1 (token auth, --cpus per node),
deploys the endpoint onto it with `colorize submit serve MODEL --replicas 1-2` (autoscaling
on ongoing requests per replica, target one batch), then
1. load: C closed-loop clients post 256x256 JPEG crops of ../shared/data/bsds500/test until
   two model replicas run, and --hold seconds more (bounded by --max-seconds);
2. idle: no requests until the model deployment is back at one replica.
Every second it records the running and target replica counts (Serve's REST status, with
the token) and the requests answered; it prints that timeline and the throughput while one
and while two replicas were running under the same load.

    python bench/autoscaling.py --model /tmp/srv_fit/model     # about 5 minutes
    python bench/autoscaling.py --quick                         # trains a small model first

Without --model it first trains a small model (sample photos, image size 64, 2 epochs).
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import machine  # noqa: E402
from bench.serve_load import free_port, photo_bodies, train_model  # noqa: E402


class Load:
    """C threads posting photos back to back; the times of the answers (status 200)."""

    def __init__(self, url: str, bodies: list[bytes], clients: int):
        self.url, self.bodies = url, bodies
        self.done: list[float] = []
        self.errors = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=120) as client:
            sent = index
            while not self.stop.is_set():
                body = self.bodies[sent % len(self.bodies)]
                sent += len(self.threads)
                try:
                    ok = client.post(self.url, content=body,
                                     headers={"Content-Type": "image/jpeg"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.done.append(time.time())
                else:
                    self.errors += 1

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def model_replicas(client) -> tuple[int, int]:
    from colorize.distributed import serve_submit

    app = serve_submit.details(client)["applications"]["colorize"]
    counts = serve_submit.replica_counts(app)
    (name,) = [n for n, d in app["deployments"].items()
               if d["deployment_config"].get("autoscaling_config")]
    return counts[name]


def record(client, load: Load | None, t0: float, until, max_seconds: float) -> list[dict]:
    """One row a second: time, phase, running and target replicas, answers in that second."""
    rows = []
    deadline = time.time() + max_seconds
    while time.time() < deadline:
        tick = time.time()
        running, target = model_replicas(client)
        answered = sum(tick - 1 <= t < tick for t in load.done) if load else 0
        rows.append({"t": tick - t0, "phase": "load" if load else "idle", "running": running,
                     "target": target, "answered": answered})
        if until(rows):
            break
        time.sleep(max(0.0, 1 - (time.time() - tick)))
    return rows


def throughput(load: Load, rows: list[dict], t0: float, replicas: int) -> tuple[float, float]:
    """Answers/s over the load seconds with `replicas` running (and how many seconds)."""
    seconds = [r["t"] + t0 for r in rows if r["phase"] == "load" and r["running"] == replicas]
    if len(seconds) < 2:
        return float("nan"), 0.0
    start, end = seconds[0], seconds[-1]
    answered = sum(start <= t < end for t in load.done)
    return answered / (end - start), end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each of the two nodes")
    parser.add_argument("--upscale-delay-s", type=float, default=5)
    parser.add_argument("--downscale-delay-s", type=float, default=15)
    parser.add_argument("--hold", type=float, default=60, help="seconds of load at 2 replicas")
    parser.add_argument("--max-seconds", type=float, default=300, help="bound on each phase")
    parser.add_argument("--base-port", type=int, default=37300)
    parser.add_argument("--quick", action="store_true", help="smoke run: short phases")
    args = parser.parse_args()
    if args.quick:
        args.hold, args.max_seconds = 10, 150

    from colorize.distributed import local_cluster, serve_submit

    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-as-", dir="/tmp"))
    model = args.model or train_model(work / "fit", epochs=2)
    bodies = photo_bodies(32)
    cluster = local_cluster.up(work / "cluster", workers=1, cpus=args.cpus,
                               base_port=args.base_port, object_store_mb=256)
    try:
        client = serve_submit.connect(cluster.dashboard_url, cluster.token_path)
        port = free_port()
        settings = {"model_dir": str(model), "min_replicas": 1, "max_replicas": 2,
                    "max_batch_size": args.max_batch_size, "cpus_per_replica": float(args.cpus),
                    "port": port}
        url = serve_submit.submit(client, settings, port=port,
                                  upscale_delay_s=args.upscale_delay_s,
                                  downscale_delay_s=args.downscale_delay_s)
        print(f"deployed: {url} (replicas 1-2, batch {args.max_batch_size}, "
              f"{args.clients} clients)", flush=True)
        load = Load(f"{url}colorize", bodies, args.clients)
        t0 = time.time()
        load.start()
        reached: list[float] = []

        def held(rows):
            if rows[-1]["running"] == 2 and not reached:
                reached.append(rows[-1]["t"])
            return bool(reached) and rows[-1]["t"] - reached[0] >= args.hold

        try:
            rows = record(client, load, t0, held, args.max_seconds)
        finally:
            load.finish()
        rows += record(client, None, t0, lambda r: r[-1]["running"] == r[-1]["target"] == 1,
                       args.max_seconds)
        report(rows, load, t0, args)
    finally:
        local_cluster.stop(cluster, grace_s=10)


def report(rows: list[dict], load: Load, t0: float, args) -> None:
    print("\n| t (s) | phase | running | target | answered/s |\n| ---: | --- | ---: | ---: | ---: |")
    last = None
    for row in rows:  # a row when something changes, and every 10 s
        key = (row["phase"], row["running"], row["target"])
        if key != last or int(row["t"]) % 10 == 0:
            print(f"| {row['t']:.0f} | {row['phase']} | {row['running']} | {row['target']} | "
                  f"{row['answered']} |")
        last = key
    first_two = next((r["t"] for r in rows if r["running"] == 2), None)
    target_two = next((r["t"] for r in rows if r["target"] == 2), None)
    load_end = max(r["t"] for r in rows if r["phase"] == "load")
    back = next((r["t"] for r in rows if r["phase"] == "idle" and r["running"] == 1), None)
    one, one_s = throughput(load, rows, t0, 1)
    two, two_s = throughput(load, rows, t0, 2)
    def at(t):
        return "never" if t is None else f"{t:.0f} s"

    print(f"\ntarget 2 at {at(target_two)}, 2 running at {at(first_two)}, load stopped at "
          f"{at(load_end)}, back to 1 at {at(back)}; errors {load.errors}")
    print(f"throughput with 1 replica: {one:.1f} img/s over {one_s:.0f} s; with 2: {two:.1f} "
          f"img/s over {two_s:.0f} s; 2 / 1 = {two / one:.2f}")


if __name__ == "__main__":
    main()
