"""``python -m astrops store info|verify|export|import|compact|provenance PATH``: look after a
store from the shell.

``info`` lists datasets, counts and configs; ``verify`` finds damaged files; ``export`` and
``import`` convert to and from the seed's params.csv + npz files; ``compact`` merges record files;
``provenance`` writes PROVENANCE.md. The implementation lives in the entry layer because ``import``
composes a Hydra simulation config and builds a simulator: the store itself knows nothing of Hydra
or 21cmFAST.

Exit status: 0 done (``verify``: no problems), 1 ``verify`` found problems, 2 bad input (one line
on stderr: a wrong path, a dataset directory given as the store,
``verify``/``compact``/``provenance`` on a store without datasets, a bad CSV), 141 stdout closed
early (``... | head``): quietly, as ``cat`` or ``grep`` killed by SIGPIPE (128 + 13), so ``set -o
pipefail`` scripts see the same status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from astrops.errors import StoreError
from astrops.store.dataset import Dataset
from astrops.store.seed_format import export_seed_format, read_seed_format, seed_records
from astrops.store.store import Store

EPIPE_STATUS = 141


def _selected(store: Store, args: argparse.Namespace) -> list:
    """The datasets a command works on; none at all is an error, not an empty success."""
    if args.dataset:
        return [store.dataset(args.dataset)]
    datasets = store.datasets()
    if not datasets:
        raise StoreError(
            f"{store.root} holds no datasets (no */dataset.json): give the store directory that "
            "holds them, e.g. data/reference"
        )
    return datasets


def _info(store: Store, args: argparse.Namespace) -> int:
    datasets = store.datasets() if not args.dataset else [store.dataset(args.dataset)]
    # an empty store is a valid answer to "what is in it?", but it must not look like data
    if not datasets:
        print(
            f"{store.root}: no datasets (a store holds <name>-<hash>/dataset.json directories, "
            "e.g. data/reference)"
        )
    for d in datasets:
        t = d.read_table(include_failed=True)
        status = Counter(t["status"].to_pylist())
        u = d.spec.get("user_params", {})
        versions = d.spec.get("versions", {})
        print(
            f"{d.name}  ({status.get('ok', 0)} spectra, {status.get('failed', 0)} failed, "
            f"{len(d.record_files())} files)"
        )
        print(f"  hash {d.hash}")
        print(
            f"  redshifts {d.redshifts}  HII_DIM {u.get('HII_DIM')}  BOX_LEN {u.get('BOX_LEN')} "
            "Mpc  "
            f"{len(d.k)} k-bins [{d.k.min():.4g}, {d.k.max():.4g}] 1/Mpc"
        )
        print(f"  parameters {d.parameters}  versions {versions}")
        designs = Counter(t["design"].to_pylist())
        for design, n in designs.items():
            print(f"  design ({n} records): {design}")
        if args.json:
            print(json.dumps(d.meta, indent=1))
    return 0


def _verify(store: Store, args: argparse.Namespace) -> int:
    """Report every dataset, damaged dataset.json files included, instead of stopping at the
    first."""
    bad = 0
    if args.dataset:
        targets = [store.dataset(args.dataset)]
    else:
        targets = [p.parent for p in sorted(store.root.glob("*/dataset.json"))]
        if not targets:
            _selected(store, args)  # raises: zero datasets verified is not a pass
    for target in targets:
        try:
            d = target if isinstance(target, Dataset) else Dataset(target)
        except StoreError as exc:
            print(f"{target.name}: 1 problem(s)\n  {exc}")
            bad += 1
            continue
        problems = d.verify()
        print(f"{d.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  {p}")
        bad += len(problems)
    return 1 if bad else 0


def _export(store: Store, args: argparse.Namespace) -> int:
    csv_path = export_seed_format(store.dataset(args.dataset), args.out)
    print(f"wrote {csv_path}")
    return 0


def _simulation_config(args: argparse.Namespace):
    """(config, simulator) named by ``--config`` and the overrides; any problem is one StoreError
    line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from hydra.utils import instantiate
    from omegaconf.errors import OmegaConfBaseException

    from astrops.entry.rules import SIMULATE_RULES
    from astrops.validation import validate

    os.environ.setdefault("ASTROPS_ROOT", str(Path(__file__).resolve().parents[2]))
    conf_dir = str(Path(os.environ["ASTROPS_ROOT"]) / "conf")
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose("simulate", overrides=[f"simulation={args.config}", *args.overrides])
        validate(cfg, SIMULATE_RULES)
        return cfg, instantiate(cfg.simulation.simulator, _convert_="all")
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise StoreError(
            f"--config {args.config} {' '.join(args.overrides)}: {first}: fix the simulation "
            "config or its overrides (see conf/simulation/)"
        ) from None


def _import(store: Store, args: argparse.Namespace) -> int:
    rows = read_seed_format(args.csv, args.npz_dir)
    if args.dataset:
        dataset = store.dataset(args.dataset)
        records = seed_records(
            rows, dataset.k, dataset.redshifts, dataset.parameters, None, args.csv
        )
    # the configuration the spectra were made with: a simulation config (default: the reference
    # one)
    else:
        cfg, sim = _simulation_config(args)
        store.check_writable()
        priors = {k: list(v) for k, v in cfg.simulation.design.priors.items()}
        k = sim.k()
        # every row is checked against the configuration before the dataset directory is created
        records = seed_records(rows, k, sim.redshifts, list(priors), priors, args.csv)
        dataset = store.create_dataset(
            cfg.simulation.name or sim.default_name(), sim.spec(), list(priors), sim.redshifts, k
        )
    if records:
        dataset.append(records)
        dataset.compact()
    print(
        f"imported {len(records)} spectra into {dataset.name} (IC seeds unknown unless the CSV "
        "has a 'seed' column)"
    )
    return 0


def _provenance(store: Store, args: argparse.Namespace) -> int:
    """Write PROVENANCE.md beside the datasets: what was made, how, with which code, and what it
    holds."""
    import numpy as np

    blocks = ["# Provenance\n"]
    for d in _selected(store, args):
        t = d.read_table(include_failed=True)
        r = d.load()
        ok = t["status"].to_numpy(zero_copy_only=False) == "ok"
        wall = t["wall_time"].to_numpy()[ok]
        versions = sorted(set(t["versions"].to_pylist()))
        designs = sorted(set(t["design"].to_pylist()))
        rows = [
            ("dataset", f"`{d.name}`"),
            ("config hash (sha256 of the spec in dataset.json)", f"`{d.hash}`"),
            ("records", f"{int(ok.sum())} successful, {int((~ok).sum())} failed"),
            ("redshifts", str(d.redshifts)),
            ("k-bins", f"{len(d.k)}, {d.k.min():.5f} to {d.k.max():.5f} 1/Mpc"),
            ("design(s)", "<br>".join(f"`{x}`" for x in designs)),
            ("IC seeds", f"{len(set(r.seeds.tolist()))} distinct of {len(r)}"),
            ("versions", "<br>".join(f"`{v}`" for v in versions)),
            (
                "wall time per simulation",
                f"median {np.median(wall):.2f} s, 10-90 % "
                f"{np.percentile(wall, 10):.2f}-{np.percentile(wall, 90):.2f} s"
                if len(wall)
                else "-",
            ),
        ]
        for j, z in enumerate(d.redshifts):
            x = r.xH[:, j]
            rows.append(
                (
                    f"neutral fraction at z = {z:g}",
                    f"{100 * (x == 0).mean():.1f} % fully ionized, "
                    f"{100 * (x < 0.05).mean():.1f} % below 0.05, {100 * (x > 0.95).mean():.1f} % "
                    "above 0.95",
                )
            )
        blocks.append("| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n")
    if args.command:
        blocks.append(f"Made with:\n\n```bash\n{args.command}\n```\n")
    out = store.root / "PROVENANCE.md"
    out.write_text("\n".join(blocks))
    print(f"wrote {out}")
    return 0


def _compact(store: Store, args: argparse.Namespace) -> int:
    for d in _selected(store, args):
        print(f"{d.name}: {d.compact()} records in one file")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m astrops store", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn, hlp in (
        ("info", _info, "datasets, counts, configs"),
        ("verify", _verify, "find damaged files"),
        ("export", _export, "write params.csv + npz files"),
        ("import", _import, "add spectra from params.csv + npz files"),
        ("compact", _compact, "merge record files"),
        ("provenance", _provenance, "write PROVENANCE.md: contents, design, versions"),
    ):
        sp = sub.add_parser(name, help=hlp)
        sp.add_argument("path", help="store directory, e.g. data/store or data/reference")
        sp.add_argument("--dataset", help="dataset name, readable name or hash prefix")
        sp.set_defaults(fn=fn)
        if name == "info":
            sp.add_argument("--json", action="store_true", help="also print each dataset.json")
        if name == "provenance":
            sp.add_argument("--command", help="the command that made the store, recorded verbatim")
        if name == "export":
            sp.add_argument("--out", required=True, help="output directory")
        if name == "import":
            sp.add_argument(
                "--csv",
                required=True,
                help="params CSV (HII_EFF_FACTOR, ION_Tvir_MIN, R_BUBBLE_MAX[, file, seed])",
            )
            sp.add_argument(
                "--npz-dir", help="directory of the npz files (default: beside the CSV)"
            )
            sp.add_argument(
                "--config", default="reference", help="simulation config they were made with"
            )
            sp.add_argument(
                "overrides",
                nargs="*",
                help="Hydra overrides of that config, e.g. simulation.redshifts=[9.0]",
            )
    args = p.parse_args(argv)
    if args.cmd != "import" and not Path(args.path).is_dir():
        print(
            f"error: {args.path} is not a directory: give the store directory (e.g. data/store)",
            file=sys.stderr,
        )
        return 2
    try:
        return args.fn(Store(args.path), args)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cli(argv: list[str] | None = None) -> int:
    """``main`` for a process whose stdout may be a pipe closed early (``info ... | head -1``).

    Python's standard recipe: the pending output is flushed inside the guard, and stdout is pointed
    at /dev/null so that the interpreter's final flush cannot raise a second time.
    """
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EPIPE_STATUS
