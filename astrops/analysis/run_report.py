"""The report every run leaves behind (network, ensemble, baseline): the metrics table on the
console and beside the run, the standard figures, the model card; logged to the run's MLflow run
when there is one.

It lives with the analysis, not the training loop: it only reads what a finished test produced
(metrics, predictions, the data module's split), so every kind of run reports through this one
path. The entry point hands :func:`report_run` to training as its reporter
(:mod:`astrops.training.reporting`); training never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrops.analysis import report
from astrops.diagnostics import CalibrationReport, calibration_suite
from astrops.plotting import save_figures

if TYPE_CHECKING:
    from astrops.data import SpectraDataModule
    from astrops.models import ParameterEstimator
    from astrops.tracking import TrackedRun
    from astrops.training.reporting import TestReport


def report_run(test: TestReport) -> dict[str, float]:
    """The whole report of a finished run: :func:`report_results`, any further result stages as
    tables, and for a network logged to MLflow its model card and saliency. Returns the
    calibration suite's metrics."""
    metrics = report_results(
        test.dm,
        test.columns,
        test.results,
        test.outputs,
        test.out_dir,
        test.run,
        test.confusion,
        test.history,
    )
    for stage in test.stages:
        table = report.metrics_table(test.results, test.dm.parameters, test.columns, stage=stage)
        print(f"{_title(test.dm, stage)}:\n{table}\n")
    model, run = test.model, test.run
    if model is None or run is None:
        return metrics
    run.log_dict(model_card(model), "model_card.json")
    if test.saliency and test.dm.tensors["test"][0].shape[0] > 1:
        from astrops.analysis.saliency import compute_saliency

        # which k-bins and redshifts each parameter relies on (input gradients, permutation
        # importance)
        fig, table = compute_saliency(model, *test.dm.tensors["test"])
        run.log_figures({"saliency": fig})
        run.log_dict(table, "saliency.json")
    return metrics


def _title(dm: SpectraDataModule, stage: str) -> str:
    if stage != "test_informative":
        return stage
    n = int(dm.informative_mask(dm.test_idx).sum())
    return f"Informative test spectra (0.05 < x_H < 0.95 at a selected redshift; {n})"


def report_results(
    dm: SpectraDataModule,
    columns: Sequence[tuple[str, str]],
    results: dict[str, float],
    outputs: dict[str, np.ndarray],
    out_dir: Path,
    run: TrackedRun | None = None,
    confusion: list | None = None,
    history: list | None = None,
) -> dict[str, float]:
    """Console table, figures (pred-vs-true; confusion matrices; training curves), the calibration
    suite (:mod:`astrops.diagnostics`) where there is a predictive distribution, and files; logged
    to ``run`` when given, else saved beside the run. Returns the suite's metrics
    (``test/sbc_p/*``, ``test/tarp_atc``) for the caller's results.

    ``columns`` are the metrics table's (header, metric key) pairs, the task's ``table_columns``;
    ``outputs`` holds the test set's ``true``, ``pred`` and, for Gaussian heads and ensembles,
    ``std`` (N, P) in physical units; for posterior samples (flows) also ``samples`` (N, L, P) and
    the truths' ``pit``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    table = report.metrics_table(results, dm.parameters, columns)
    # a held-out store's own dataset, else the split's
    test_set = getattr(dm, "test_ds", None) or dm.dataset
    print(
        f"\nTest metrics ({test_set.name}, {len(outputs.get('true', dm.test_idx))} test "
        f"spectra):\n{table}\n"
    )
    files = [out_dir / "metrics_table.md"]
    files[0].write_text(table + "\n")
    figures = {"training_curves": report.training_curves(history)} if history else {}
    if "pred" in outputs:
        r2 = {p: results.get(f"test/R2/{p}", float("nan")) for p in dm.parameters}
        figures["pred_vs_true"] = report.pred_vs_true(
            outputs["pred"], outputs["true"], dm.parameters, r2
        )
    metrics: dict[str, float] = {}
    # a predictive distribution: the calibration suite
    if "std" in outputs or "samples" in outputs:
        suite = _calibration(dm, outputs)
        metrics = suite.metrics
        for name, text in suite.files.items():
            files.append(out_dir / name)
            files[-1].write_text(text)
        figures.update(suite.figures)
    if confusion:
        figures["confusion_matrices"] = report.confusion_matrices(confusion, dm.parameters)
    if dm.sigma is not None:  # an observation: what the instrument sees of a few test spectra
        figures["observed_spectra"] = report.observed_spectra(
            dm.k, dm.delta[dm.test_idx[:4]], dm.sigma, dm.redshifts
        )
    if run is None:
        save_figures(figures, out_dir)
        return metrics
    run.log_figures(figures)
    # only this report's files: a coverage.md left by an earlier run is not logged
    for path in files:
        run.log_file(path)
    return metrics


def _calibration(dm: SpectraDataModule, outputs: dict[str, np.ndarray]) -> CalibrationReport:
    """The suite on the test split: a flow's own samples and PITs; a Gaussian's (single head,
    ensemble mixture moments) exact PITs and 1 000 draws from it (seed 0), like ``predict.py
    samples=``."""
    true = outputs["true"]
    samples, pit = outputs.get("samples"), outputs.get("pit")
    if samples is None:
        from scipy.stats import norm

        from astrops.models.flow import TEST_SAMPLES

        std = np.maximum(outputs["std"], 1e-12)
        pit = norm.cdf((true - outputs["pred"]) / std)
        eps = np.random.default_rng(0).standard_normal((len(true), TEST_SAMPLES, true.shape[1]))
        samples = outputs["pred"][:, None, :] + std[:, None, :] * eps
    # DDP: rank 0 holds the first part
    xH = dm.xH[dm.test_idx][: len(true), len(dm.redshifts) // 2]
    return calibration_suite(
        true, samples, list(dm.parameters), xH, box=getattr(dm, "ranges", None), pit=pit
    )


def model_card(model: ParameterEstimator) -> dict[str, Any]:
    """What reusing the model needs besides its weights: grids, input scaling, target scaling,
    class edges."""
    t, c = model.transform, model.task.codec
    return {
        "parameters": model.param_names,
        "redshifts": model.meta.get("redshifts"),
        "k": model.meta.get("k"),
        "kept_bins": t.kept_bins.tolist(),
        "features": {
            "log10": bool(t.log10),
            "floor": t.floor.tolist(),
            "mean": t.mean.tolist(),
            "std": t.std.tolist(),
        },
        "targets": {
            "mean": c.mean.tolist(),
            "std": c.std.tolist(),
            "class_edges": c.edges.tolist(),
        },
        "lineage": model.meta.get("lineage"),
    }
