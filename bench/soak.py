"""Soak test of the Serve endpoint: a long closed-loop load of good and bad inputs.

C clients (default 32) on 127.0.0.1 post for `--seconds` (default 600) a mix of real
photos (JPEG, PNG, RGBA, grey; random strength and output format) and bad inputs (empty,
not an image, truncated, bad strength, bad format, wrong Content-Type, decompression-bomb
header, multipart without a file), each with the status it must get. It reports every
unexpected answer (a wrong status, a non-JSON error, a dropped connection; target 0),
p50/p99 latency, and the model replicas' resident memory (from `GET /stats`) sampled
through the run: at the start (after warming up under the load), at the end, its
growth, and its trend over the second half (MiB per minute).

    python bench/soak.py --quick                   # 45 s at 16 clients, trains its own model
    python bench/soak.py --model /tmp/srv_fit/model            # 10 minutes at 32 clients
    python bench/soak.py --url http://127.0.0.1:8000/ --seconds 120   # a running server

Exit code 1 when an answer was unexpected or a replica's memory grew by more than
`--max-growth-mb`.
"""

import argparse
import asyncio
import json
import os
import random
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import SHARED_DATA, machine  # noqa: E402


def photos(count: int) -> list[np.ndarray]:
    """BGR photos: the shared test photos if present, else generated gradients."""
    files = sorted((SHARED_DATA / "bsds500" / "test").glob("*.jpg"))[:count]
    if files:
        return [cv2.resize(cv2.imread(str(f)), (256, 192), interpolation=cv2.INTER_AREA)
                for f in files]
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:192, 0:256]
    return [np.clip(np.dstack([xs, ys, np.full_like(xs, 128)]) + rng.normal(0, 10, (192, 256, 3)),
                    0, 255).astype(np.uint8) for _ in range(count)]


def encoded(image: np.ndarray, ext: str) -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def bomb_header(side: int = 30000) -> bytes:
    """A tiny PNG whose header claims side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def make_cases(count: int) -> list[dict]:
    """name, body, content type, params, expected status, weight."""
    pictures = photos(count)
    cases = []
    for i, bgr in enumerate(pictures):
        rgba = np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)])
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for name, body, kind in (("jpeg", encoded(bgr, ".jpg"), "image/jpeg"),
                                 ("png", encoded(bgr, ".png"), "image/png"),
                                 ("rgba png", encoded(rgba, ".png"), "image/png"),
                                 ("grey jpeg", encoded(grey, ".jpg"), "image/jpeg")):
            cases.append({"name": f"good {name}", "body": body, "type": kind, "status": 200,
                          "weight": 6 if name == "jpeg" else 1, "photo": i})
    jpeg = cases[0]["body"]
    multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
                 b"--XyZ--\r\n")
    for name, body, kind, params, status in (
        ("empty body", b"", "image/png", {}, 400),
        ("not an image", b"plain text, not a picture" * 20, "application/octet-stream", {}, 415),
        ("truncated jpeg", jpeg[: len(jpeg) // 2], "image/jpeg", {}, 415),
        ("strength out of range", jpeg, "image/jpeg", {"strength": "4"}, 422),
        ("strength not a number", jpeg, "image/jpeg", {"strength": "vivid"}, 422),
        ("unknown format", jpeg, "image/jpeg", {"format": "tiff"}, 400),
        ("wrong content type", b"{}", "application/json", {}, 415),
        ("decompression bomb", bomb_header(), "image/png", {}, 413),
        ("multipart without file", multipart, "multipart/form-data; boundary=XyZ", {}, 400),
    ):
        cases.append({"name": f"bad {name}", "body": body, "type": kind, "params": params,
                      "status": status, "weight": count // 3})  # about a fifth of the load
    return cases


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.latency_ms: dict[str, list[float]] = defaultdict(list)


async def client_loop(client: httpx.AsyncClient, url: str, cases: list[dict], weights,
                      rng: random.Random, stop_at: float, tally: Tally) -> None:
    while time.monotonic() < stop_at:
        case = rng.choices(cases, weights)[0]
        params = dict(case.get("params", {}))
        if case["status"] == 200:  # good photos: any strength, any output format
            params.update(strength=f"{rng.uniform(0, 3):.2f}",
                          format=rng.choice(["png", "png", "jpeg", "webp"]))
        started = time.perf_counter()
        try:
            answer = await client.post(url, content=case["body"], params=params,
                                       headers={"Content-Type": case["type"]})
        except httpx.HTTPError as exc:
            tally.unexpected.append(f"{case['name']}: {type(exc).__name__} {exc}")
            continue
        took = (time.perf_counter() - started) * 1000
        tally.counts[f"{case['name']} -> {answer.status_code}"] += 1
        problem = check(case, answer)
        if problem:
            tally.unexpected.append(problem)
        else:
            tally.latency_ms["good" if case["status"] == 200 else "bad"].append(took)


def check(case: dict, answer: httpx.Response) -> str | None:
    """None if the answer is what the case must get, else what is wrong."""
    if answer.status_code != case["status"]:
        return f"{case['name']}: HTTP {answer.status_code} (expected {case['status']}): {answer.text[:200]}"
    if answer.status_code == 200:
        if not answer.headers.get("content-type", "").startswith("image/"):
            return f"{case['name']}: 200 without an image"
        return None
    try:
        body = answer.json()
    except ValueError:
        return f"{case['name']}: HTTP {answer.status_code} with a non-JSON body"
    if body.get("status") != answer.status_code or "\n" in str(body.get("error", "\n")):
        return f"{case['name']}: malformed error body {body}"
    return None


async def sample_memory(base: str, stop_at: float, every: float, samples: list) -> None:
    """GET /stats now and then: (seconds since start, replica pid or "ingress", RSS MiB)."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            try:
                stats = (await client.get(base + "stats")).json()
                t = time.monotonic() - started
                samples.append((t, stats["pid"], stats["rss_mb"]))
                samples.append((t, "ingress", stats["ingress_rss_mb"]))
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.monotonic() >= stop_at:
                return
            await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))


async def soak(base: str, cases: list[dict], concurrency: int, seconds: float,
               seed: int = 0) -> tuple[Tally, list]:
    tally, samples = Tally(), []
    weights = [c["weight"] for c in cases]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        clients = [client_loop(client, base + "colorize", cases, weights, random.Random(seed + i),
                               stop_at, tally) for i in range(concurrency)]
        memory = sample_memory(base, stop_at, max(2.0, seconds / 20), samples)
        await asyncio.gather(*clients, memory)
    return tally, samples


def memory_summary(samples: list, warm_s: float) -> dict:
    """Per replica (and the ingress): RSS at the first sample after warm-up, at the last, and the growth."""
    by_pid = defaultdict(list)
    for t, pid, rss in samples:
        by_pid[pid].append((t, rss))
    summary = {}
    for pid, series in by_pid.items():
        warm = [s for s in series if s[0] >= warm_s] or series
        start, end = warm[0][1], series[-1][1]
        late = warm[len(warm) // 2:]  # the second half: is it still climbing?
        slope = (np.polyfit([t for t, _ in late], [r for _, r in late], 1)[0] * 60
                 if len(late) >= 3 else float("nan"))
        summary[pid] = {"start_mb": start, "end_mb": end, "growth_mb": round(end - start, 1),
                        "max_mb": max(r for _, r in series), "samples": len(series),
                        "late_mb_per_min": round(float(slope), 2)}
    return summary


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def start_server(model: Path, replicas: str) -> str:
    from bench.serve_load import free_port
    from colorize.serve.runner import start

    return start(model, port=free_port(), replicas=replicas)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--url", help="soak a running server instead (base URL, e.g. http://127.0.0.1:8000/)")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replicas", default="1")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--max-growth-mb", type=float, default=100.0,
                        help="a replica (or the ingress) growing more than this fails the soak")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="45 s at 16 clients")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.concurrency = 45.0, 16
    base = args.url
    print(f"machine: {machine()}")
    if base is None:
        from bench.serve_load import train_model

        model = args.model or train_model(Path(tempfile.mkdtemp(prefix="soak-")) / "fit", 1)
        base = start_server(model, args.replicas)
    base = base.rstrip("/") + "/"
    cases = make_cases(args.photos)
    print(f"soaking {base}colorize: {args.concurrency} clients for {args.seconds:.0f} s, "
          f"{len(cases)} kinds of input ({sum(c['status'] != 200 for c in cases)} bad)", flush=True)
    started = time.perf_counter()
    try:
        tally, samples = asyncio.run(soak(base, cases, args.concurrency, args.seconds))
    finally:
        if args.url is None:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
    elapsed = time.perf_counter() - started
    answered = sum(tally.counts.values())
    good, bad = tally.latency_ms["good"], tally.latency_ms["bad"]
    memory = memory_summary(samples, warm_s=min(60.0, args.seconds / 4))
    print(f"\n{answered} answers in {elapsed:.0f} s ({answered / elapsed:.1f}/s); "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    for key, count in sorted(tally.counts.items()):
        print(f"  {count:6d}  {key}")
    print(f"good photos: p50 {percentile(good, 50):.0f} ms, p99 {percentile(good, 99):.0f} ms; "
          f"bad inputs: p50 {percentile(bad, 50):.0f} ms, p99 {percentile(bad, 99):.0f} ms")
    print(f"unexpected answers: {len(tally.unexpected)}")
    for line in tally.unexpected[:10]:
        print(f"  {line}")
    for pid, m in memory.items():
        who = "ingress" if pid == "ingress" else f"model replica pid {pid}"
        print(f"{who}: RSS {m['start_mb']:.0f} MiB after warm-up, {m['end_mb']:.0f} "
              f"MiB at the end ({m['growth_mb']:+.0f}), max {m['max_mb']:.0f}; second half "
              f"{m['late_mb_per_min']:+.1f} MiB/min ({m['samples']} samples)")
    grew = [pid for pid, m in memory.items() if m["growth_mb"] > args.max_growth_mb]
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine(), "seconds": elapsed, "concurrency": args.concurrency,
            "counts": dict(tally.counts), "unexpected": tally.unexpected,
            "good_ms": {"p50": percentile(good, 50), "p99": percentile(good, 99)},
            "bad_ms": {"p50": percentile(bad, 50), "p99": percentile(bad, 99)},
            "memory": {str(k): v for k, v in memory.items()}, "memory_samples": samples,
        }, indent=2))
    return 1 if tally.unexpected or grew or not answered else 0


if __name__ == "__main__":
    sys.exit(main())
