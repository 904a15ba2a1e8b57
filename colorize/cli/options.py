"""Options shared by the subcommands: --data, one flag per TrainConfig field, and the
TrainConfig they add up to. Every subcommand module imports these; nothing here imports a
subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

DATA_HELP = ("folder of colour photos, or 'sample'; repeat --data (or give a comma-separated "
             "list) to train on several folders together")


class _DataAction(argparse.Action):
    """--data, repeatable; each value may itself be a comma-separated list of folders.
    Given once or more, the value is a list (the default, when not given, is kept as is)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from colorize.data import data_sources

        current = getattr(namespace, self.dest, None)
        items = list(current) if isinstance(current, list) else []
        setattr(namespace, self.dest, items + data_sources(values))


def add_data_option(parser, default: str | None = "sample", required: bool = False,
                    help: str = DATA_HELP, flag: str = "--data") -> None:
    """The one --data option: a folder, 'sample', or several folders (see colorize.data);
    `flag` names another option that takes the same values (--test-data)."""
    parser.add_argument(flag, action=_DataAction, default=default, required=required,
                        metavar="DIR", help=help)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--image-size, --loss, ...), typed and explained from the
    dataclass itself, overriding the defaults (or --config FILE)."""
    import dataclasses

    from colorize.config import CHOICES, TrainConfig

    group = parser.add_argument_group("model and training (override --config)")
    group.add_argument("--config", type=Path, help="JSON file of configuration values")
    helps = TrainConfig.field_help()
    for field in dataclasses.fields(TrainConfig):
        kind = {"int": int, "float": float, "str": str, "bool": _yes_no}[str(field.type)]
        # Choices are listed, not enforced here: TrainConfig refuses a bad value in one line.
        choices = CHOICES.get(field.name)
        group.add_argument(
            "--" + field.name.replace("_", "-"), dest=field.name, type=kind, default=None,
            metavar="|".join(choices) if choices else ("yes|no" if kind is _yes_no else None),
            help=f"{helps.get(field.name, '')} (default: {field.default})",
        )


def _yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (None = not given)."""
    import dataclasses

    from colorize.config import TrainConfig

    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }


def config_from_args(args: argparse.Namespace, base=None):
    """The TrainConfig the options describe: the flags given, over `base` (an experiment's
    best configuration), else over --config FILE, else over the defaults."""
    from colorize.config import TrainConfig

    if base is None and getattr(args, "config", None):
        base = TrainConfig.from_file(args.config)
    return TrainConfig.from_dict(config_overrides(args), base)
