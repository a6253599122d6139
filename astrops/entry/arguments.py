"""Arguments several command lines share."""

from __future__ import annotations

import argparse
import ast
import importlib.util
from pathlib import Path


def held_out_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The arguments every command that applies a model to a held-out store takes (score,
    diagnostics)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", help="a checkpoint or ensemble directory written by train.py")
    ap.add_argument(
        "--test-store", required=True, help="store holding simulations the model never saw"
    )
    ap.add_argument(
        "--test-dataset", default=None, help="dataset in that store (default: its only one)"
    )
    ap.add_argument(
        "--store", default=None, help="the training store, when not where the checkpoint says"
    )
    return ap


def doc_of(module: str) -> str | None:
    """A module's docstring read from its source, without importing it: ``--help`` stays instant
    instead of loading torch, pandas and matplotlib for a usage line."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text()))
