"""Joining Ray: one way for every command (tune, train, serve, pipeline) to get a Ray instance.

With an address it joins that cluster; without one it starts a local instance
(`address="local"`, which never attaches to another cluster running on the same machine)
with its dashboard bound to 127.0.0.1; a process that already has Ray reuses it. The
process's signal handlers are kept (see colorize/signals.py).
"""

from __future__ import annotations

import contextlib
from typing import Any

from colorize import signals
from colorize.errors import ColorizeError
from colorize.signals import keep_handlers


def connect(address: str | None = None, **local_options: Any) -> tuple[bool, str | None]:
    """(whether this call started Ray, the dashboard URL when Ray knows one).

    `local_options` (num_cpus, dashboard_port, ...) apply only when a local instance is
    started. A failure to start or reach Ray is a ColorizeError naming the address.
    """
    import ray

    if ray.is_initialized():
        from colorize import compat

        return False, _http(compat.dashboard_url())
    options: dict[str, Any] = {"address": address or "local", "log_to_driver": False}
    if options["address"] == "local":
        options.update(include_dashboard=True, dashboard_host="127.0.0.1")
        options.update({k: v for k, v in local_options.items() if v is not None})
    try:
        # ray.init installs a SIGTERM handler (kill the node, exit 1): the CLI's own clean
        # stop does that too, and says so; elsewhere Ray's stays.
        with keep_handlers() if signals.installed() else contextlib.nullcontext():
            context = ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ColorizeError(f"could not start or reach Ray at {options['address']!r}: {exc}") from None
    return True, _http(getattr(context, "dashboard_url", None))


def _http(url: str | None) -> str | None:
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"
