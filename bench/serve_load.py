"""Load test of the Serve endpoint against two baselines measured in the same run.

A closed-loop load generator on 127.0.0.1 (C workers, each sending its next request when
the last one is answered; bounded in requests and seconds per level) posts 256x256 JPEG
photos cut from ../shared/data/bsds500/test at several concurrency levels, and reports
requests/s, p50/p95/p99 latency and errors for:

- serve (batched): the Ray Serve app of serve/app.py (`@serve.batch`, max batch 16);
- serve (unbatched): the same app with max_batch_size=1 (batching on vs off, as a ratio);
- plain FastAPI: bench/plain_fastapi_server.py, one uvicorn process, no Ray, no batching;
- in-process ceiling: `colorize_batch` on batches of 16 decoded photos in this process
  (and the same with JPEG decoding and PNG encoding, the work a request adds).

    python bench/serve_load.py --quick                      # smoke run, ~2 minutes
    python bench/serve_load.py --model runs/quickstart/model --concurrency 1,4,16,32

Without --model it first trains a small model with `colorize fit` settings (sample
photos, image size 64, 2 epochs).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SHARED_DATA as DATA  # noqa: E402
from bench.common import machine  # noqa: E402


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
        bodies.append(cv2.imencode(".jpg", image[y:y + side, x:x + side], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return bodies


def train_model(out: Path, epochs: int) -> Path:
    from colorize.config import TrainConfig
    from colorize.fit_job import run_fit

    print(f"training a small model ({epochs} epochs on the sample photos) into {out} ...", flush=True)
    run_fit(TrainConfig(image_size=64, epochs=epochs), "sample", out, None, verbose=0)
    return out / "model"


def in_process(model_dir: Path, bodies: list[bytes], batch: int, seconds: float) -> dict:
    """Images/s of colorize_batch alone and with decode + encode, batches of `batch`."""
    from colorize.artifact import load_artifact
    from colorize.colorizer import colorize_batch
    from colorize.images import decode_image, encode_image, split_alpha

    artifact = load_artifact(model_dir)
    images = [decode_image(b) for b in bodies]
    batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)] or [images]
    colorize_batch(artifact, batches[0])  # warm-up

    def rate(work) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for group in range(len(batches)):
                done += work(group)
        return done / (time.perf_counter() - started)

    def model_only(group: int) -> int:
        return len(colorize_batch(artifact, batches[group]))

    def with_codec(group: int) -> int:
        decoded = [decode_image(bodies[(group * batch + i) % len(bodies)]) for i in range(batch)]
        for result in colorize_batch(artifact, decoded):
            encode_image(*split_alpha(result), "png")
        return batch

    return {"model_only": rate(model_only), "with_codec": rate(with_codec)}


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, requests: int,
                      seconds: float) -> dict:
    """C workers, each posting its next photo as soon as the last one is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for body in bodies[:concurrency]:  # warm the connections, not counted
            await client.post(url, content=body, headers={"Content-Type": "image/jpeg"})
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() - started < seconds:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    answer = await client.post(url, content=body, headers={"Content-Type": "image/jpeg"})
                    if answer.status_code != 200:
                        errors.append(f"HTTP {answer.status_code}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "concurrency": concurrency, "requests": sent, "ok": len(latencies), "errors": len(errors),
        "rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
        "error_kinds": sorted(set(errors)),
    }


def run_levels(name: str, url: str, bodies, levels, requests, seconds) -> list[dict]:
    rows = []
    for c in levels:
        row = asyncio.run(closed_loop(url, bodies, c, requests, seconds))
        row["server"] = name
        print(f"  {name:18} c={c:<3} {row['rps']:7.1f} req/s  p50 {row['p50']:7.1f}  "
              f"p95 {row['p95']:7.1f}  p99 {row['p99']:7.1f} ms  errors {row['errors']}", flush=True)
        rows.append(row)
    return rows


def wait_until_up(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {seconds:.0f}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_plain(model_dir, bodies, levels, requests, seconds) -> list[dict]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "plain_fastapi_server.py"), "--model", str(model_dir),
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        return run_levels("plain FastAPI", f"http://127.0.0.1:{port}/colorize", bodies, levels,
                          requests, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_serve(model_dir, bodies, levels, unbatched_levels, args) -> list[dict]:
    import ray
    from ray import serve

    from serve.cli import start

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        options = {"batch_wait_timeout_s": args.batch_wait_ms / 1000,
                   "cpus_per_replica": args.cpus_per_replica}
        port = free_port()
        url = start(model_dir, port=port, replicas=args.replicas,
                    max_batch_size=args.max_batch_size, **options)
        rows += run_levels("serve (batched)", url + "colorize", bodies, levels, args.requests,
                           args.seconds)
        stats = serve.get_deployment_handle("Colorizer", app_name="colorize").stats.remote().result()
        print(f"  batch sizes seen by one replica: {stats['batch_sizes']}", flush=True)
        start(model_dir, port=port, replicas=args.replicas, max_batch_size=1, **options)
        rows += run_levels("serve (unbatched)", url + "colorize", bodies, unbatched_levels,
                           args.requests, args.seconds)
    finally:
        serve.shutdown()
        ray.shutdown()
    return rows


def summary(rows: list[dict], ceiling: dict) -> list[str]:
    by = {(r["server"], r["concurrency"]): r for r in rows}
    lines = []
    for (server, c), row in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if server != "serve (batched)":
            continue
        parts = [f"c={c}: serve {row['rps']:.1f} req/s = {row['rps'] / ceiling['with_codec']:.0%} of "
                 f"the in-process ceiling with codec ({row['rps'] / ceiling['model_only']:.0%} of model only)"]
        plain = by.get(("plain FastAPI", c))
        if plain and plain["rps"]:
            parts.append(f"{row['rps'] / plain['rps']:.2f}x the plain server")
        off = by.get(("serve (unbatched)", c))
        if off and off["rps"]:
            parts.append(f"batching on/off {row['rps'] / off['rps']:.2f}x")
        lines.append(", ".join(parts))
    errors = sum(r["errors"] for r in rows)
    lines.append(f"errors over all runs: {errors}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--concurrency", default="1,4,16,32", help="comma-separated levels")
    parser.add_argument("--unbatched", default="16,32", help="levels for the max_batch_size=1 run")
    parser.add_argument("--requests", type=int, default=400, help="at most this many per level")
    parser.add_argument("--seconds", type=float, default=40, help="at most this long per level")
    parser.add_argument("--photos", type=int, default=32, help="distinct 256x256 photos")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=20)
    parser.add_argument("--replicas", default="1")
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write all figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: small levels and counts")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.unbatched, args.requests, args.seconds = "1,8", "8", 48, 15
    levels = [int(c) for c in args.concurrency.split(",")]
    unbatched = [int(c) for c in args.unbatched.split(",") if c]

    print(f"machine: {machine()}")
    bodies = photo_bodies(args.photos)
    workdir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = args.model or train_model(workdir / "fit", 1 if args.quick else 2)
    print(f"model: {model}; {len(bodies)} photos of 256x256 (JPEG, "
          f"{sum(map(len, bodies)) // len(bodies) // 1024} KiB average)\n", flush=True)

    ceiling = in_process(model, bodies, args.max_batch_size, 5 if args.quick else 15)
    print(f"in-process colorize_batch (batch {args.max_batch_size}): {ceiling['model_only']:.1f} img/s; "
          f"with JPEG decode + PNG encode: {ceiling['with_codec']:.1f} img/s", flush=True)
    rows = bench_plain(model, bodies, levels, args.requests, args.seconds)
    rows += bench_serve(model, bodies, levels, unbatched, args)
    print("\n" + "\n".join(summary(rows, ceiling)))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "ceiling": ceiling, "rows": rows,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
