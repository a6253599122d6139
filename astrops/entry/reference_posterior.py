"""``python -m astrops reference-selfcheck`` (the reference on its own mocks) and
``python -m astrops reference-posterior`` (the same as ``python -m astrops.reference.posterior``,
whose module holds that command line so that it runs as a module).

Every refusal is one line on stderr and exit status 2, before any work and before anything is
written; the work is done by :mod:`astrops.reference.posterior` and
:mod:`astrops.reference.selfcheck`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from astrops.entry.arguments import doc_of
from astrops.reference.posterior import (
    add_common_arguments,
    argument_problem,
    main,
    reference_setup,
)

posterior_main = main  # python -m astrops reference-posterior


def selfcheck_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m astrops reference-selfcheck",
        description=doc_of("astrops.reference.selfcheck"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(ap)
    ap.add_argument("--n-mocks", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="FILE.json (new)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    problem = argument_problem(args) or ("--n-mocks must be >= 10" if args.n_mocks < 10 else None)
    if not problem and (out.suffix != ".json" or out.exists() or not out.parent.is_dir()):
        problem = f"--out {out}: give a new .json path in an existing directory"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        setup, _ = reference_setup(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    from astrops.reference.selfcheck import self_consistency

    t0 = time.perf_counter()
    result = self_consistency(setup, args.n_mocks, args.seed, args.workers)
    result.update(emulator=str(Path(args.emulator).resolve()), observation=args.observation)
    result["seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("coverage", "sbc_p", "unresolved", "n")}))
    return 0
