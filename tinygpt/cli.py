"""What the command lines share: one-line usage errors (exit 2) and option range checks."""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, NoReturn


class UsageError(Exception):
    """A bad option, file or state: printed as one line `error: ...` on stderr, exit status 2."""


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (none for flags and options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text.strip()


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and errors as one line instead of the usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def explicit_options(parser: argparse.ArgumentParser, argv: "list[str] | None") -> set[str]:
    """The dests of the options actually given on the command line (not filled in by defaults)."""
    saved = [(a, a.default) for a in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved:
            action.default = default


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
    """Raise UsageError naming the option and its allowed range unless lo (<|<=) value (<|<=) hi, finite.

    integer=True also requires a Python int (values read back from a JSON file may be anything).
    """
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        if lo is not None and hi is not None:
            allowed = f"{lo} {'<' if lo_open else '<='} {name} {'<' if hi_open else '<='} {hi}"
        elif lo is not None:
            allowed = f"{'>' if lo_open else '>='} {lo}"
        elif hi is not None:
            allowed = f"{'<' if hi_open else '<='} {hi}"
        else:
            allowed = "an integer" if integer else "a finite number"
        if integer and lo is not None and hi is None:
            allowed = f"an integer {allowed}"
        if lo is not None and hi is not None:
            raise UsageError(f"{name} must satisfy {allowed}, got {value!r}")
        raise UsageError(f"{name} must be {allowed}, got {value!r}")


def silence_stdout() -> None:
    """After a closed pipe (| head): send what is still buffered to /dev/null so exit prints nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
