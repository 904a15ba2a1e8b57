"""The `colorize` command: one entry point, one module per subcommand family.

    local.py     fit, evaluate, predict (this machine)
    tune.py      tune (Ray Tune search, tune/service.py)
    train.py     train (Ray Train, colorize/distributed/train_driver.py)
    serve.py     serve (Ray Serve, serve/)
    pipeline.py  pipeline (tune, train, serve in one command)
    jobs.py      submit, jobs (Ray Jobs on a cluster; submit serve)
    cluster.py   cluster (a local multi-node Ray)

Each has `register(subparsers)`; `options.py` holds the options they share. Every
ColorizeError becomes one line on stderr, never a traceback. Exit codes:

    0    done
    1    a runtime error: a file not found, a cluster that does not answer, a failed
         training or job, an image `predict` could not colorize
    2    a usage error: argparse's own, a bad option value or combination of options
         (a ColorizeError with `usage`, see colorize/errors.py)
    130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM (colorize/signals.py)

`python -m colorize.cli` is the same command (what a submitted job runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from colorize import __version__, signals
from colorize.cli import cluster, jobs, local, pipeline, serve, train, tune
from colorize.cli.options import refuse_abbreviations
from colorize.errors import ColorizeError

SUBCOMMANDS = (local, train, serve, tune, jobs, pipeline, cluster)  # in --help's order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize", description="Automatic image colorization: tune, train and serve on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"colorize {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    refuse_abbreviations(parser)
    return parser


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with stderr muted at the file-descriptor level:
    its C++ start-up lines (oneDNN notice, CUDA probing on a CPU machine) ignore
    TF_CPP_MIN_LOG_LEVEL and would bury the one-line messages this CLI promises."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter off the console
    # From the start, the first Ctrl-C or SIGTERM stops the command cleanly (signals.py).
    with signals.handling():
        try:
            return _run(argv)
        except ColorizeError as exc:
            print(f"colorize: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            return _stop(exc)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        import_tensorflow_quietly()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


def _stop(exc: KeyboardInterrupt) -> int:
    """After a stop signal: shut down the Ray this command started, say where the work is."""
    import signal

    stop = exc if isinstance(exc, signals.Stopped) else signals.Stopped(signal.SIGINT)
    for signum in signals.SIGNALS:  # the stop is under way: further signals change nothing
        signal.signal(signum, signal.SIG_IGN)
    _shutdown_ray()
    what = f" {stop.what}" if stop.what else ""
    after = f"; {stop.after}" if stop.after else " (rerun the same command to resume)"
    print(f"colorize: stopped{what} on {signal.Signals(stop.signum).name}{after}",
          file=sys.stderr, flush=True)
    return stop.exit_code


def _shutdown_ray() -> None:
    """Stop the local Ray instance (or leave the cluster) this process started or joined."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        logging.getLogger("ray").setLevel(logging.ERROR)  # no teardown chatter after the message
        ray.shutdown()

