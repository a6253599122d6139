"""CUDA against CPU for the default dense network and the CNN: same weights give the same outputs,
the same seed gives the same test R², and how many samples per second each device trains.

    .venv/bin/python scripts/gpu_check.py [--accelerator cuda|cpu] [--models dense,cnn] [--epochs
    50]
                                          [--limit-train-batches N] [--json report.json]      (make
                                          gpu-check)

For each model (``model=dense``, the default network, and ``model=cnn``), the train config composed
as ``train.py`` composes it, on the bundled reference data (``astrops.data.SpectraDataModule``, z =
8):

1. **Same weights.** The model is built once from the training seed through the training code's own
   ``build_model`` (data-sized backbone, task head, fitted input transform), copied to the CPU and
   to the accelerator, and the test split's spectra go through both copies in eval mode. Measure:
   the largest element-wise ``|a - b| / max(|b|, 1e-12)`` over the decoded outputs in physical
   units (ζ, log10 T_vir, R_mfp; ``a`` the accelerator's, ``b`` the CPU's); must be ≤ ``--rel-tol``
   (1e-4). Done twice: with the seeded initial weights, and with the weights the CPU run below ends
   with (its best checkpoint, loaded by ``astrops.checkpoints.load_estimator``).
2. **Same seed.** ``astrops.training.train`` runs once with ``trainer.accelerator=cpu`` and once
   with the accelerator (``gpu`` for CUDA), both from the same seed, ``--epochs`` epochs (50),
   ``logger=none``, ``saliency=false``, no progress bar and **early stopping off**
   (``callbacks.early_stopping=null``), so both sides train exactly the same number of epochs; the
   checkpoint callback, the learning-rate schedule, calibration and the test are as configured.
   ``|ΔR²|`` on the test split must be ≤ ``--r2-tol`` (0.01) for every parameter.
3. **Samples/s.** Training samples seen during ``fit`` divided by its wall time (CUDA synchronised
   at both ends), per-epoch validation and the per-epoch training-split metrics included: what a
   user of ``train.py`` gets. Measured by a callback added to the run's ``callbacks`` config.

``--accelerator cpu`` compares the CPU against the CPU (the check's own test on a machine without a
GPU: the outputs and R² must then agree exactly, and both sides report their own samples/s).

Exit status: 0 every check passed; 1 a check failed (the table says which); 2 bad arguments;
3 no CUDA device (``--accelerator cuda``, the default, on a machine without one): it prints
"no CUDA device: CUDA is untested" and checks nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ASTROPS_ROOT", str(ROOT))

import torch  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA = 0, 1, 2, 3
NO_CUDA = "no CUDA device: CUDA is untested"
# denominator floor of the relative difference (the physical outputs are O(1)-O(100), never 0)
TINY = 1e-12
MODELS = ("dense", "cnn")


@dataclass
class SideResult:
    """One training run on one device."""

    device: str
    epochs: int
    samples: int
    fit_s: float
    samples_per_s: float
    r2: dict[str, float]


@dataclass
class ModelReport:
    model: str
    rel_diff_init: float = math.nan  # same seeded initial weights on both devices
    rel_diff_trained: float = math.nan  # the CPU run's best weights on both devices
    abs_diff_max: float = math.nan
    n_spectra: int = 0
    sides: dict[str, SideResult] = field(default_factory=dict)
    r2_diff: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


# -- pieces
# ------------------------------------------------------------------------------------------------
class FitTimer(Callback):
    """Training samples seen and wall time of ``fit`` (CUDA synchronised at both ends).

    ``train`` instantiates its callbacks from the config, so the measurement of the last fit is
    left in ``FitTimer.last`` for the caller."""

    last: dict[str, float] = {}

    def __init__(self) -> None:
        self.samples, self.t0 = 0, 0.0

    @staticmethod
    def _sync(trainer) -> None:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def on_train_start(self, trainer, pl_module) -> None:
        self._sync(trainer)
        self.samples, self.t0 = 0, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # a training call runs a group of mini-batches (astrops.data.batches)
        group = batch if isinstance(batch, list) else [batch]
        self.samples += sum(int(x.shape[0]) for x, _ in group)

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(trainer)
        FitTimer.last = {
            "samples": self.samples,
            "fit_s": time.perf_counter() - self.t0,
            "epochs": trainer.current_epoch,
        }


def compose(model: str, out_dir: Path, overrides: list[str]):
    """The train config as ``train.py`` composes it (``${hydra:...}`` resolves), without the hydra
    node."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            "train",
            overrides=[
                f"model={model}",
                f"paths.output_dir={out_dir}",
                f"hydra.run.dir={out_dir}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def to_device(model, device: str):
    """An independent copy of ``model`` on ``device``."""
    return copy.deepcopy(model).to(device)


def to_accelerator(model, device: str):
    """The accelerator's copy (its own function so that the tests can inject a difference)."""
    return to_device(model, device)


def max_rel_diff(a, b) -> tuple[float, float]:
    """(max |a - b| / max(|b|, TINY), max |a - b|) over all elements; ``b`` is the reference
    (CPU)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    diff = (a - b).abs()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf, math.inf
    return float((diff / b.abs().clamp_min(TINY)).max()), float(diff.max())


def compare_outputs(model, x_cpu, device: str) -> tuple[float, float]:
    """Decoded physical-unit outputs of the same weights on the CPU and on ``device``."""
    cpu, other = to_device(model, "cpu").eval(), to_accelerator(model, device).eval()
    with torch.no_grad():
        ref = cpu.predict_physical(x_cpu)["value"]
        out = other.predict_physical(x_cpu.to(device))["value"]
    return max_rel_diff(out, ref)


def initial_model(cfg):
    """The model ``train`` would start from (seeded), and the data module's test spectra on the
    CPU."""
    import lightning as L
    from hydra.utils import instantiate

    from astrops.training.network import build_model, checkpoint_meta

    dm = instantiate(cfg.data)
    dm.prepare()
    dm.setup()  # no trainer: tensors on the CPU
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg, dm, checkpoint_meta(cfg, dm))
    return model, dm.tensors["test"][0], list(dm.parameters)


def train_side(model: str, accelerator: str, out_dir: Path, args) -> tuple[SideResult, str]:
    """One ``astrops.training.train`` run; returns its result and the best checkpoint."""
    from omegaconf import open_dict

    from astrops.analysis.run_report import report_run
    from astrops.training import train

    overrides = [
        f"trainer.accelerator={accelerator}",
        "logger=none",
        "saliency=false",
        "callbacks.progress_bar=null",
        "++trainer.enable_progress_bar=false",
        "callbacks.early_stopping=null",
        f"trainer.max_epochs={args.epochs}",
    ]
    if args.limit_train_batches:
        overrides.append(f"trainer.limit_train_batches={args.limit_train_batches}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = compose(model, out_dir, overrides)
    with open_dict(cfg):
        cfg.callbacks["gpu_check_timer"] = {
            "_target_": f"{FitTimer.__module__}.{FitTimer.__qualname__}"
        }
    FitTimer.last = {}
    # Lightning's and the run report's tables: shown only with --verbose or on an error
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(sys.stdout if args.verbose else captured):
            results, best = train(cfg, reporter=report_run)  # as train.py runs it
    except BaseException:
        print(captured.getvalue(), file=sys.stderr)
        raise
    t = FitTimer.last
    if not t:
        raise RuntimeError("the fit timer saw no training (was the callback dropped?)")
    params = [
        k.split("/")[-1]
        for k in results
        if k.startswith("test/R2/") and not k.endswith("/overall")
    ]
    return SideResult(
        device=accelerator,
        epochs=int(t["epochs"]),
        samples=int(t["samples"]),
        fit_s=t["fit_s"],
        samples_per_s=t["samples"] / t["fit_s"] if t["fit_s"] > 0 else math.nan,
        r2={p: results[f"test/R2/{p}"] for p in params},
    ), best


def check_model(model: str, device: str, args, work: Path) -> ModelReport:
    """Same weights on both devices, then one training run on each (CPU first)."""
    from astrops.checkpoints import load_estimator

    rep = ModelReport(model)
    cfg = compose(
        model, work / f"{model}-init", [] if args.seed is None else [f"seed={args.seed}"]
    )
    net, x_test, _ = initial_model(cfg)
    rep.n_spectra = int(x_test.shape[0])
    rep.rel_diff_init, abs_init = compare_outputs(net, x_test, device)

    cpu, best = train_side(model, "cpu", work / f"{model}-reference", args)
    acc, _ = train_side(
        model, "gpu" if device == "cuda" else "cpu", work / f"{model}-accelerator", args
    )
    acc.device = "cuda" if device == "cuda" else "cpu (2nd run)"
    rep.sides = {"cpu": cpu, "accelerator": acc}
    trained, _ = load_estimator(best)
    rep.rel_diff_trained, abs_trained = compare_outputs(trained, x_test, device)
    rep.abs_diff_max = max(abs_init, abs_trained)

    rep.r2_diff = {p: abs(acc.r2[p] - cpu.r2[p]) for p in cpu.r2}
    rep.failures = verdict(rep, args.rel_tol, args.r2_tol)
    return rep


def verdict(rep: ModelReport, rel_tol: float, r2_tol: float) -> list[str]:
    """What failed, one line each (empty: every check passed). NaN never passes."""
    out = []
    for name, v in (("initial", rep.rel_diff_init), ("trained", rep.rel_diff_trained)):
        if not v <= rel_tol:
            out.append(
                f"{rep.model}: same {name} weights differ by {v:.3g} relative > {rel_tol:g}"
            )
    if not rep.r2_diff:
        out.append(f"{rep.model}: no test R² to compare")
    for p, d in rep.r2_diff.items():
        if not d <= r2_tol:
            out.append(f"{rep.model}: |ΔR²| {p} = {d:.4f} > {r2_tol:g}")
    for side in rep.sides.values():
        if not (math.isfinite(side.samples_per_s) and side.samples_per_s > 0):
            out.append(f"{rep.model}: samples/s on {side.device} is {side.samples_per_s}")
        if side.epochs != rep.sides["cpu"].epochs:
            out.append(
                f"{rep.model}: {side.device} trained {side.epochs} epochs, the CPU "
                f"{rep.sides['cpu'].epochs}"
            )
    return out


# -- report
# ------------------------------------------------------------------------------------------------
def header(device: str) -> str:
    name = platform.processor() or platform.machine()
    cpu = f"CPU {name}, {os.cpu_count()} cores (training: train.yaml's cpu_threads)"
    if device == "cuda":
        acc = (
            f"CUDA {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}, "
            f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, TF32 cuDNN "
            f"{torch.backends.cudnn.allow_tf32})"
        )
    else:
        acc = "the CPU again (--accelerator cpu: CPU against CPU, CUDA untested)"
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    return f"gpu-check: {versions}\n  reference: {cpu}\n  accelerator: {acc}"


def render(reports: list[ModelReport], args) -> str:
    lines = [
        f"\nSame weights, test split, decoded physical outputs: max |a-b|/max(|b|,{TINY:g}), "
        f"tolerance {args.rel_tol:g}",
        "| model | spectra | initial weights | trained weights | max abs diff | ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        ok = r.rel_diff_init <= args.rel_tol and r.rel_diff_trained <= args.rel_tol
        lines.append(
            f"| {r.model} | {r.n_spectra} | {r.rel_diff_init:.3g} | {r.rel_diff_trained:.3g} | "
            f"{r.abs_diff_max:.3g} | {'yes' if ok else 'NO'} |"
        )
    params = list(reports[0].r2_diff) if reports else []
    lines += [
        f"\nTraining {args.epochs} epochs from one seed (early stopping off): test R², |ΔR²| "
        f"tolerance {args.r2_tol:g}",
        "| model | device | epochs | samples | fit s | samples/s | "
        + " | ".join(f"R² {p}" for p in params)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(params),
    ]
    for r in reports:
        for s in r.sides.values():
            lines.append(
                f"| {r.model} | {s.device} | {s.epochs} | {s.samples} | {s.fit_s:.2f} | "
                f"{s.samples_per_s:.0f} | " + " | ".join(f"{s.r2[p]:.4f}" for p in params) + " |"
            )
        lines.append(
            f"| {r.model} | \\|ΔR²\\| | | | | | "
            + " | ".join(f"{r.r2_diff[p]:.4f}" for p in params)
            + " |"
        )
    failures = [f for r in reports for f in r.failures]
    lines.append(
        "\ngpu-check: " + ("PASS" if not failures else "FAIL\n  " + "\n  ".join(failures))
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 pass, 1 a check failed, 2 bad arguments, 3 no CUDA device",
    )
    ap.add_argument(
        "--accelerator",
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="what the CPU is compared against (cpu: CPU against CPU, to test the check without a "
        "GPU)",
    )
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated, from: dense (the default network), cnn",
    )
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument(
        "--limit-train-batches", type=int, default=None, help="batches per epoch (quick runs)"
    )
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the config's)")
    ap.add_argument("--rel-tol", type=float, default=1e-4)
    ap.add_argument("--r2-tol", type=float, default=0.01)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--verbose", action="store_true", help="show each training run's own output")
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.models:
        ap.error(f"--models: unknown {bad or 'none given'}; choose from {', '.join(MODELS)}")
    if args.epochs < 1 or (args.limit_train_batches is not None and args.limit_train_batches < 1):
        ap.error("--epochs and --limit-train-batches must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.accelerator == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, flush=True)
        return EXIT_NO_CUDA
    print(header(args.accelerator), flush=True)
    quiet = ("lightning", "lightning.pytorch", "lightning.fabric", "astrops")
    levels = {name: logging.getLogger(name).level for name in quiet}
    reports = []
    # the runs' own INFO lines and warnings would bury the table (--verbose shows their stdout)
    try:
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            warnings.simplefilter("ignore")
            for model in args.models:
                reports.append(check_model(model, args.accelerator, args, Path(tmp)))
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    print(render(reports, args), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "accelerator": args.accelerator,
                    "epochs": args.epochs,
                    "rel_tol": args.rel_tol,
                    "r2_tol": args.r2_tol,
                    "models": [asdict(r) for r in reports],
                },
                indent=2,
                default=float,
            )
        )
    return EXIT_FAILED if any(r.failures for r in reports) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
