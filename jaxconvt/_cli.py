"""Argument types shared by the ``check`` and ``bench`` subcommands: bad numbers are usage errors."""

from __future__ import annotations

import argparse


def int_at_least(low: int):
    """An argparse ``type``: an integer of at least ``low``; anything else exits with status 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}; got {value}")
        return value

    parse.minimum = low
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
