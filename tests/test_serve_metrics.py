"""The endpoint's own metrics (serve/metrics.py) reach Ray's Prometheus endpoint.

The real Serve app runs on the session's local Ray with two ingress replicas; a few good
and bad requests go to it through colorize.client; the node's metrics export port (the
`/metrics` page Prometheus scrapes) is then read until every figure is there, summed over
the replicas: requests by route and status, latency histograms, errors, requests in
flight, batch sizes and time per stage of the model replica, and failed images.
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_serve import photo, png_bytes

from colorize.client import Client
from colorize.errors import ColorizeError

APP = "metered"


def metrics_url(ray) -> str:
    """The local node's metrics export page: Ray's agent serves it on all interfaces, or on
    the node's address when that is a loopback one."""
    node = ray._private.worker.global_worker.node
    return f"http://127.0.0.1:{node.metrics_export_port}/metrics"


def samples(url: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(found: list, name: str, **labels: str) -> float:
    """The sum of `name`'s samples of this application with these labels (all replicas)."""
    return sum(s.value for s in found if s.name == name and s.labels.get("application") == APP
               and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.slow
def test_requests_latencies_batches_and_errors_reach_the_metrics_endpoint(ray_local, tiny_artifact):
    from ray import serve

    from colorize.serve.runner import start

    url = start(tiny_artifact, name=APP, route_prefix=f"/{APP}", ingress_replicas=2,
                max_batch_size=4, batch_wait_timeout_s=0.05, cpus_per_replica=0.5)
    try:
        status = serve.status().applications[APP].deployments
        assert status["Ingress"].replica_states.get("RUNNING") == 2  # ingress_replicas
        client = Client(url, timeout=60, retries=0)
        bodies = [png_bytes(photo(24, 24, seed=i)) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(client.colorize, bodies))
        assert all(a.shape == (24, 24, 3) for a in answers)
        for _ in range(2):
            with pytest.raises(ColorizeError) as caught:
                client.colorize(b"not an image at all")
            assert caught.value.status == 415
        assert client.health()["status"] == "ok"

        wanted = {
            ("ray_colorize_requests_total", "/colorize", "200"): 8,
            ("ray_colorize_requests_total", "/colorize", "415"): 2,
            ("ray_colorize_requests_total", "/healthz", "200"): 1,
            ("ray_colorize_errors_total", "/colorize", "415"): 2,
            ("ray_colorize_request_latency_ms_count", "/colorize", "200"): 8,
        }
        deadline, found = time.monotonic() + 120, []
        while time.monotonic() < deadline:  # Ray's agent collects every few seconds
            found = samples(metrics_url(ray_local))
            if (all(total(found, name, route=route, status=code) >= count
                    for (name, route, code), count in wanted.items())
                    and total(found, "ray_colorize_batch_size_count") >= 2
                    and total(found, "ray_colorize_stage_latency_ms_count", stage="model") >= 8
                    and total(found, "ray_colorize_image_errors_total", stage="decode") >= 2):
                break
            time.sleep(2)
        for (name, route, code), count in wanted.items():
            assert total(found, name, route=route, status=code) == count, (name, route, code)
        assert total(found, "ray_colorize_errors_total", route="/colorize", status="200") == 0
        latency = total(found, "ray_colorize_request_latency_ms_sum", route="/colorize", status="200")
        assert 0 < latency < 8 * 60_000  # milliseconds
        # Ray's exporter sums a histogram by its buckets' midpoints: counts are exact, sums not.
        batches = total(found, "ray_colorize_batch_size_count")
        assert 2 <= batches <= 8  # 8 images, at most 4 a batch; bad images never reach the model
        assert total(found, "ray_colorize_batch_size_bucket", le="4.0") == batches  # none over 4
        assert total(found, "ray_colorize_batch_size_bucket", le="+Inf") == batches
        for stage in ("decode", "queue", "model", "encode"):
            assert total(found, "ray_colorize_stage_latency_ms_count", stage=stage) == 8, stage
        assert total(found, "ray_colorize_image_errors_total", stage="decode") == 2
        in_flight = [s for s in found if s.name == "ray_colorize_requests_in_flight"
                     and s.labels.get("application") == APP]
        assert in_flight and all(s.value == 0 for s in in_flight)
        replicas = {s.labels["replica"] for s in found if s.name == "ray_colorize_requests_total"
                    and s.labels.get("application") == APP}
        assert len(replicas) >= 1 and all(s.labels.get("deployment") for s in found
                                          if s.name.startswith("ray_colorize_"))
    finally:
        serve.delete(APP)
