"""Requests per second of a running endpoint, through colorize.client (what a user's code sees).

C threads, each posting its next photo as soon as the last one is answered, for S seconds,
after one warm-up request each; the photos are the built-in sample's (short side 256 px,
centre-cropped to --side), sent as JPEG, answered as PNG. Prints one line, and one JSON line
with --json (what bench/gpu_check.sh reads).

    python bench/endpoint_rate.py http://127.0.0.1:8000/ --concurrency 16 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from colorize.client import Client  # noqa: E402
from colorize.errors import ColorizeError  # noqa: E402


def sample_jpegs(side: int) -> list[bytes]:
    from colorize.sample_data import load_sample_photo, sample_photo_names

    bodies = []
    for name in sample_photo_names():
        rgb = load_sample_photo(name)
        scale = side / min(rgb.shape[:2])
        if scale != 1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        crop = np.ascontiguousarray(rgb[y:y + side, x:x + side, ::-1])
        bodies.append(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return bodies


def measure(url: str, bodies: list[bytes], concurrency: int, seconds: float,
            timeout: float = 120.0) -> dict:
    """Closed loop of `concurrency` threads for `seconds`: rate, latencies, errors."""
    client = Client(url, timeout=timeout, retries=2, backoff_s=0.2)
    for body in bodies[:concurrency]:  # warm-up, not counted
        client.colorize_bytes(body)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def worker(offset: int) -> None:
        sent = offset
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            try:
                client.colorize_bytes(bodies[sent % len(bodies)])
            except ColorizeError as exc:
                with lock:
                    errors.append(f"{exc.status}")
                continue
            finally:
                sent += concurrency
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies or [np.nan]) * 1000
    return {"url": url, "concurrency": concurrency, "seconds": round(elapsed, 1),
            "ok": len(latencies), "errors": len(errors), "rate": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the endpoint's base URL (what colorize serve prints)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--side", type=int, default=256, help="photo side in px")
    parser.add_argument("--label", default="", help="a name for the line printed")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    row = measure(args.url, sample_jpegs(args.side), args.concurrency, args.seconds)
    row["label"] = args.label
    print(f"{args.label or args.url}: {row['rate']:.1f} req/s at C={args.concurrency} "
          f"({args.side}x{args.side} JPEG), p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, "
          f"{row['errors']} errors", flush=True)
    if args.json:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
