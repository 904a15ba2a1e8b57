#!/usr/bin/env python3
"""Regenerate docs/cli.md's option lists from the help; run from the repository root after
changing an option: python scripts/cli_docs.py

Each "## `colorize X`" code block becomes `colorize X --help` (100 columns) with the training
group cut to a pointer; the *Training options* block is that group, from the first command
that has it.
"""

import os
import re
import subprocess
import sys

PATH = "docs/cli.md"
GROUP = re.compile(r"\nmodel and training \(override --config\):\n.*?(?=\n\n[^ ]|\Z)", re.S)
POINTER = "\n\nmodel and training (override --config): see *Training options* above"
SECTION = re.compile(r"## `(colorize [a-z ]+)`\n(\n(?:[^`\n][^\n]*\n)*?)```\n.*?\n```", re.S)
TRAINING = re.compile(r"(## Training options\n.*?```\n).*?(\n```)", re.S)


def help_text(command: str) -> str:
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run([*command.split(), "--help"], capture_output=True, text=True, env=env, check=True)
    return result.stdout.rstrip("\n")


def main() -> int:
    text = open(PATH).read()
    group: list[str] = []

    def section(match: re.Match) -> str:
        command, prose = match.group(1), match.group(2)
        out = help_text(command)
        found = GROUP.search(out)
        if found:
            group.append(found.group(0).strip("\n"))
            out = GROUP.sub(POINTER, out)
        return f"## `{command}`\n{prose}```\n{out}\n```"

    text = SECTION.sub(section, text)
    text = TRAINING.sub(lambda m: m.group(1) + "\n" + group[0] + m.group(2), text, count=1)
    open(PATH, "w").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
