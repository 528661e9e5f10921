"""What every command line shares: one-line errors, config files, comma lists."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from ..errors import UserInputError


def run_main(body: Callable[[], int | None]) -> int:
    """Run ``body``; a user mistake prints one line ``error: ...`` and returns 2."""
    try:
        return int(body() or 0)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def read_config_file(path: str | Path) -> dict:
    """A YAML or JSON mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as exc:  # json/yaml parse errors
        raise UserInputError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({str(exc).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserInputError(f"{path}: expected a mapping of settings at the top level")
    return values


def int_list(text: str) -> tuple[int, ...]:
    """``5,10,25`` -> (5, 10, 25); a bad list is an argparse error (one line, status 2)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'")
    return values


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())
