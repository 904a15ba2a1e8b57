"""Load test of the Serve endpoint against its baselines, interleaved in one run.

A closed-loop load generator on 127.0.0.1 (C workers, each sending its next request when
the last one is answered) posts 256x256 JPEG photos cut from ../shared/data/bsds500/test
and receives PNGs. Every server is up at once, and each concurrency level runs in rounds:
a slice of `--slice-seconds` per server per round, the order alternating, so a shared
machine's drifting load falls on all of them alike and every ratio is taken within a
round (the median over rounds is reported). The servers:

- in-process ceiling: `colorize_batch` on batches of `--max-batch-size` decoded photos in
  this process, with JPEG decoding and PNG encoding (the work a request adds);
- plain FastAPI: bench/plain_fastapi_server.py, one uvicorn process, no Ray, no batching;
- serve xN: the Ray Serve app of serve/app.py with N model replicas (`--replicas 1,2`);
- serve unbatched: the same app with max_batch_size=1 (batching on vs off);
- serve one-hop: one replica that is both the FastAPI ingress and the batched model
  (`hops=1`), against the two deployments of serve x1;
- serve direct: `colorize serve --hops 1 --ingress direct` in its own process (its own local
  Ray, since Ray reads the direct-ingress flag at start-up), the clients posting to the
  replica's own port: one-hop without Serve's HTTP proxy in the way.

Where a request's time goes: CPU milliseconds per request of each process (client, HTTP
proxy, ingress, model replicas, the rest of Ray), which a shared machine's load inflates
far less than wall time, and the model replica's own wall time per stage (decode, queue,
model, encode) and batch sizes from `GET /stats`.

    python bench/serve_load.py --quick                    # smoke run, trains its own model
    python bench/serve_load.py --model /tmp/srv_fit/model --cpus-per-replica 2

Without --model it first trains a small model with `colorize fit` settings (sample
photos, image size 64, 2 epochs).
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SHARED_DATA as DATA  # noqa: E402
from bench.common import machine  # noqa: E402

CEILING = "in-process"
PLAIN = "plain FastAPI"


def photo_bodies(count: int, side: int = 256) -> list[bytes]:
    """JPEG bodies: centre crops of side x side from the real test photos."""
    folder = DATA / "bsds500" / "test"
    files = sorted(folder.glob("*.jpg"))[:count]
    if not files:
        sys.exit(f"no photos in {folder}: this benchmark needs ../shared/data")
    bodies = []
    for path in files:
        image = cv2.imread(str(path))
        scale = side / min(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        crop = image[y:y + side, x:x + side]
        bodies.append(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return bodies


def train_model(out: Path, epochs: int) -> Path:
    from colorize.config import TrainConfig
    from colorize.fit_run import run_fit

    print(f"training a small model ({epochs} epochs on the sample photos) into {out} ...", flush=True)
    run_fit(TrainConfig(image_size=64, epochs=epochs), "sample", out, None, verbose=0)
    return out / "model"


class InProcess:
    """The ceiling: colorize_batch on full batches in this process, codec included."""

    def __init__(self, model_dir: Path, bodies: list[bytes], batch: int):
        from colorize.artifact import load_artifact
        from colorize.images import decode_image, encode_image, split_alpha
        from colorize.inference import colorize_batch

        self.colorize_batch, self.decode = colorize_batch, decode_image
        self.encode, self.split_alpha = encode_image, split_alpha
        self.artifact, self.bodies, self.batch = load_artifact(model_dir), bodies, batch
        self.images = [decode_image(b) for b in bodies]
        colorize_batch(self.artifact, self.images[:batch])  # warm-up

    def rate(self, seconds: float, codec: bool = True) -> float:
        """Images per second over about `seconds`."""
        done, group, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            picks = [(group * self.batch + i) % len(self.bodies) for i in range(self.batch)]
            if codec:
                images = [self.decode(self.bodies[i]) for i in picks]
                for result in self.colorize_batch(self.artifact, images):
                    self.encode(*self.split_alpha(result), "png")
            else:
                self.colorize_batch(self.artifact, [self.images[i] for i in picks])
            done, group = done + self.batch, group + 1
        return done / (time.perf_counter() - started)


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """C workers, each posting its next photo as soon as the last one is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "image/jpeg"}
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(client.post(url, content=b, headers=headers)  # warm, not counted
                               for b in bodies[:concurrency]))
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() - started < seconds:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    answer = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                if answer.status_code != 200:
                    errors.append(f"HTTP {answer.status_code}")
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"ok": len(latencies), "errors": errors, "seconds": elapsed, "latencies": latencies}


class CpuMeter:
    """CPU seconds of this process and its descendants, grouped by role."""

    def __init__(self, plain_pid: int):
        self.plain_pid = plain_pid

    def role(self, proc: psutil.Process) -> str:
        if proc.pid == os.getpid():
            return "client"
        if proc.pid == self.plain_pid:
            return PLAIN
        title = " ".join(proc.cmdline())
        if "ServeReplica:" in title:  # ray::ServeReplica:<app>:<deployment>
            app, deployment = title.split("ServeReplica:", 1)[1].split()[0].split(":")[:2]
            return f"{app}/{deployment}"
        if "SERVE_REPLICA::" in title:  # while starting: ray::SERVE_REPLICA::<app>#<deployment>#id
            app, deployment = title.split("SERVE_REPLICA::", 1)[1].split("#")[:2]
            return f"{app}/{deployment}"
        if "ProxyActor" in title:
            return "proxy"
        return "ray other"  # controller, raylet, GCS, agents, idle workers

    def snapshot(self) -> dict[int, tuple[str, float]]:
        """pid -> (role, CPU seconds so far)."""
        me = psutil.Process()
        found = {}
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                found[proc.pid] = (self.role(proc), times.user + times.system)
            except psutil.Error:
                continue
        return found

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per role between two snapshots, over the processes in both (a
        process missing from one would count its whole life)."""
        totals: dict[str, float] = defaultdict(float)
        for pid, (role, seconds) in after.items():
            if pid in before:
                totals[role] += seconds - before[pid][1]
        return totals


def wait_until_up(url: str, seconds: float = 120) -> None:
    """Until GET /healthz under `url` answers (colorize.client retries refused connections)."""
    from colorize.client import Client
    from colorize.errors import ColorizeError

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            Client(url, timeout=2, retries=0).health()
            return
        except ColorizeError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_plain(model_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "plain_fastapi_server.py"), "--model", str(model_dir),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{port}/")
    return server, f"http://127.0.0.1:{port}/colorize"


def start_direct(model_dir: Path, args) -> tuple[subprocess.Popen, str]:
    """`colorize serve --hops 1 --ingress direct` as a user starts it; its replica's URL."""
    import threading

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "colorize.cli", "serve", str(model_dir), "--port", str(port), "--hops", "1",
         "--ingress", "direct", "--max-batch-size", str(args.max_batch_size),
         "--batch-wait-ms", str(args.batch_wait_ms), "--cpus-per-replica", str(args.cpus_per_replica)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while not any(line.startswith("direct:") for line in lines):
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            raise RuntimeError("colorize serve --ingress direct did not start:\n" + "".join(lines[-20:]))
        time.sleep(0.5)
    url = next(line for line in lines if line.startswith("direct:")).split()[2]
    if not url.startswith("http://127.0.0.1:"):  # loopback only
        server.kill()
        raise RuntimeError(f"unexpected direct URL {url}")
    return server, url


def start_serve_apps(model_dir: Path, args) -> dict[str, str]:
    """One Serve application per configuration, all behind the one proxy: name -> URL."""
    import ray

    from colorize.serve.runner import LOCAL_RAY_ENV, deploy
    from colorize.serve.settings import Settings

    apps = {f"serve x{n}": {"min_replicas": n, "max_replicas": n} for n in args.replica_counts}
    if args.unbatched_levels:
        apps["serve unbatched"] = {"max_batch_size": 1}
    if args.one_hop_levels:
        apps["serve one-hop"] = {"hops": 1}
    replicas = sum(options.get("min_replicas", 1) for options in apps.values())
    for key, value in LOCAL_RAY_ENV.items():  # as `colorize serve` starts its local Ray
        os.environ.setdefault(key, value)
    # logical CPUs only: every replica reserves --cpus-per-replica, all share the real cores
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, replicas * args.cpus_per_replica),
             include_dashboard=False, log_to_driver=False)
    port, urls = free_port(), {}
    for name, options in apps.items():
        settings = Settings.from_dict({
            "model_dir": str(model_dir), "port": port, "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_ms / 1000,
            "cpus_per_replica": args.cpus_per_replica, **options,
        })
        app = name.split()[-1]  # x1, x2, unbatched, one-hop: the app's name and route
        urls[name] = deploy(settings, name=app, route_prefix=f"/{app}") + "colorize"
    return urls


def stats_of(url: str) -> dict:
    from colorize.client import Client

    return Client(url, timeout=60).stats()


def run_rounds(servers: dict[str, str], ceiling: InProcess, bodies, levels, args) -> list[dict]:
    """Every (level, round, server) slice; the ceiling is measured in every round too."""
    meter = CpuMeter(args.plain_pid)
    slices = []
    for level in levels:
        only_at = {"serve unbatched": args.unbatched_levels, "serve one-hop": args.one_hop_levels,
                   "serve direct": args.direct_levels}
        names = [n for n in servers if n not in only_at or level in only_at[n]]
        for r in range(args.rounds):
            order = [CEILING, *names] if r % 2 == 0 else [*names[::-1], CEILING]
            for name in order:
                before, load = meter.snapshot(), os.getloadavg()[0]
                if name == CEILING:
                    row = {"ok": 0, "errors": [], "latencies": []}
                    row["rate"] = ceiling.rate(args.slice_seconds)
                else:
                    row = asyncio.run(closed_loop(servers[name], bodies, level, args.slice_seconds))
                    row["rate"] = row["ok"] / row["seconds"]
                row.update(server=name, level=level, round=r, load=load,
                           cpu_s=meter.spent(before, meter.snapshot()))
                slices.append(row)
                print(f"  c={level:<3} round {r}  {name:16} {row['rate']:6.1f}/s  "
                      f"errors {len(row['errors'])}  load {load:.1f}", flush=True)
    return slices


def summarise(slices: list[dict], levels: list[int], servers: list[str]) -> list[dict]:
    """Latency percentiles over all rounds, and per-round ratios (median over rounds): a
    slice's throughput to the ceiling's, the plain server's and one replica's in that
    round, and a slice's p99 to its p50 (a drifting load would widen pooled tails)."""
    table = []
    by = defaultdict(list)
    for s in slices:
        by[(s["server"], s["level"])].append(s)
    for level in levels:
        ceiling = {s["round"]: s["rate"] for s in by[(CEILING, level)]}
        for name in servers:
            rows = by.get((name, level))
            if not rows:
                continue
            ms = np.array([t for s in rows for t in s["latencies"]]) * 1000
            ms = ms if ms.size else np.array([np.nan])

            tails = [np.percentile(s["latencies"], 99) / np.percentile(s["latencies"], 50)
                     for s in rows if len(s["latencies"]) >= 10]
            table.append({
                "server": name, "level": level,
                "tail": float(statistics.median(tails)) if tails else None,
                "rate": statistics.median(s["rate"] for s in rows),
                "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                "p99": float(np.percentile(ms, 99)),
                "errors": sum(len(s["errors"]) for s in rows),
                "error_kinds": sorted({e for s in rows for e in s["errors"]}),
                "vs_ceiling": _ratio(rows, by.get((CEILING, level))) if name != CEILING else None,
                "vs_plain": _ratio(rows, by.get((PLAIN, level))) if name.startswith("serve") else None,
                "vs_x1": _ratio(rows, by.get(("serve x1", level))) if name.startswith("serve x") or name in ("serve one-hop", "serve direct") else None,
                "ceiling_rounds": [round(ceiling[r], 1) for r in sorted(ceiling)],
            })
    return table


def _ratio(rows: list[dict], baseline: list[dict] | None) -> float | None:
    """Median over rounds of rate / the baseline's rate in the same round."""
    base = {s["round"]: s["rate"] for s in baseline or []}
    values = [s["rate"] / base[s["round"]] for s in rows if base.get(s["round"])]
    return statistics.median(values) if values else None


def cpu_per_request(slices: list[dict], name: str, level: int) -> dict[str, float]:
    """Mean CPU ms per answered request of each process role, over that server's slices."""
    rows = [s for s in slices if s["server"] == name and s["level"] == level]
    answered = sum(s["ok"] for s in rows) or 1
    totals: dict[str, float] = defaultdict(float)
    for s in rows:
        for role, seconds in s["cpu_s"].items():
            totals[role] += seconds
    return {k: round(v / answered * 1000, 1) for k, v in sorted(totals.items()) if v > 0.005}


def fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "" if value is None else pattern.format(value)


def report(table: list[dict], slices: list[dict], servers: dict[str, str], args) -> None:
    print("\n| server | C | req/s | p50 ms | p95 ms | p99 ms | p99/p50 per round | errors | "
          "/ ceiling | / plain | / x1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in table:
        tail = fmt(row["tail"])
        latency = ["", "", ""] if row["server"] == CEILING else [
            f"{row[k]:.0f}" for k in ("p50", "p95", "p99")]
        print(f"| {row['server']} | {row['level']} | {row['rate']:.1f} | {' | '.join(latency)} | "
              f"{tail} | {row['errors']} | {fmt(row['vs_ceiling'])} | {fmt(row['vs_plain'])} | "
              f"{fmt(row['vs_x1'])} |")
    focus = 16 if 16 in args.levels else args.levels[-1]
    print(f"\nCPU ms per request at C={focus} (mean over its slices):")
    for name in [CEILING, *servers]:
        cpu = cpu_per_request(slices, name, focus)
        if name == CEILING:  # the ceiling runs in this process: per image, not per request
            ceiling_rows = [s for s in slices if s["server"] == CEILING and s["level"] == focus]
            images = sum(s["rate"] * args.slice_seconds for s in ceiling_rows) or 1
            seconds = sum(s["cpu_s"].get("client", 0.0) for s in ceiling_rows)
            cpu = {"this process": round(seconds / images * 1000, 1)}
        print(f"  {name:16} total {sum(cpu.values()):6.1f}  {cpu}")
    print("\nmodel replicas (whole run): batch sizes and mean wall ms per stage")
    for name, url in servers.items():
        if name.startswith("serve"):
            stats = stats_of(url)
            print(f"  {name:16} {stats['batch_sizes']}  {stats['stage_ms']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--concurrency", default="1,4,16,32", help="comma-separated levels")
    parser.add_argument("--replicas", default="1,2", help="replica counts, one Serve app each")
    parser.add_argument("--unbatched", default="16", help="levels for the max_batch_size=1 app")
    parser.add_argument("--one-hop", default="16", help="levels for the hops=1 app (none: '')")
    parser.add_argument("--direct", default="16",
                        help="levels for colorize serve --hops 1 --ingress direct (none: '')")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slice-seconds", type=float, default=8.0)
    parser.add_argument("--photos", type=int, default=32, help="distinct 256x256 photos")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=None,
                        help="default: the Settings default")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write all figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: small levels and counts")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.replicas, args.unbatched, args.one_hop, args.direct = "1,8", "1", "", "8", "8"
        args.rounds, args.slice_seconds = 1, 5.0
    if args.batch_wait_ms is None:
        from colorize.serve.settings import Settings

        args.batch_wait_ms = Settings("m").batch_wait_timeout_s * 1000
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.replica_counts = [int(n) for n in args.replicas.split(",") if n]
    args.unbatched_levels = [int(c) for c in args.unbatched.split(",") if c]
    args.one_hop_levels = [int(c) for c in args.one_hop.split(",") if c]
    args.direct_levels = [int(c) for c in args.direct.split(",") if c]

    print(f"machine: {machine()}")
    bodies = photo_bodies(args.photos)
    model = args.model or train_model(Path(tempfile.mkdtemp(prefix="serve-load-")) / "fit",
                                       1 if args.quick else 2)
    print(f"model: {model}; {len(bodies)} photos of 256x256 (JPEG, "
          f"{sum(map(len, bodies)) // len(bodies) // 1024} KiB average); "
          f"batch wait {args.batch_wait_ms:g} ms\n", flush=True)
    ceiling = InProcess(model, bodies, args.max_batch_size)
    print(f"in-process colorize_batch (batch {args.max_batch_size}), model only: "
          f"{ceiling.rate(3, codec=False):.1f} img/s", flush=True)
    plain, plain_url = start_plain(model)
    args.plain_pid = plain.pid
    import ray
    from ray import serve

    direct = None
    try:
        servers = {PLAIN: plain_url}
        if args.direct_levels:
            direct, servers["serve direct"] = start_direct(model, args)
        servers.update(start_serve_apps(model, args))
        slices = run_rounds(servers, ceiling, bodies, args.levels, args)
        table = summarise(slices, args.levels, [CEILING, *servers])
        report(table, slices, servers, args)
        if args.json:
            args.json.write_text(json.dumps({
                "machine": machine(), "table": table,
                "slices": [{k: v for k, v in s.items() if k != "latencies"} for s in slices],
                "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    finally:
        plain.terminate()
        plain.wait(timeout=30)
        if direct is not None:  # its own Ray: the first SIGINT drains and stops it
            direct.send_signal(signal.SIGINT)
            direct.wait(timeout=90)
        serve.shutdown()
        ray.shutdown()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
