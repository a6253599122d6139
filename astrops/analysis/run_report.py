"""The report every run leaves behind (network, ensemble, baseline): the metrics table on the console and
beside the run, the standard figures, the model card; logged to the run's MLflow run when there is one.

It lives with the analysis, not the training loop: it only reads what a finished test produced
(metrics, predictions, the data module's split), so every kind of run reports through this one path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrops.analysis import report
from astrops.analysis.figures import save_figures

if TYPE_CHECKING:
    from astrops.data import SpectraDataModule
    from astrops.models import ParameterEstimator
    from astrops.tracking import TrackedRun


def report_results(dm: SpectraDataModule, columns: Sequence[tuple[str, str]], results: dict[str, float],
                   outputs: dict[str, np.ndarray], out_dir: Path, run: TrackedRun | None = None,
                   confusion: list | None = None, history: list | None = None) -> None:
    """Console table, figures (pred-vs-true; PIT, coverage curve and coverage table when there is a std;
    confusion matrices; training curves) and files; logged to ``run`` when given, else saved beside the run.

    ``columns`` are the metrics table's (header, metric key) pairs, the task's ``table_columns``;
    ``outputs`` holds the test set's ``true``, ``pred`` and, for Gaussian heads and ensembles, ``std``
    (N, P) in physical units; for posterior samples (flows) also the truths' ``pit``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    table = report.metrics_table(results, dm.parameters, columns)
    print(f"\nTest metrics ({dm.dataset.name}, {len(outputs.get('true', dm.test_idx))} test spectra):\n{table}\n")
    files = [out_dir / "metrics_table.md"]
    files[0].write_text(table + "\n")
    figures = {"training_curves": report.training_curves(history)} if history else {}
    if "pred" in outputs:
        r2 = {p: results.get(f"test/R2/{p}", float("nan")) for p in dm.parameters}
        figures["pred_vs_true"] = report.pred_vs_true(outputs["pred"], outputs["true"], dm.parameters, r2)
    if "std" in outputs or "pit" in outputs:  # a flow's own PIT; a Gaussian's Φ((y − μ)/σ)
        pit = outputs.get("pit")
        if pit is None:
            pit = report.norm_cdf((outputs["true"] - outputs["pred"]) / np.maximum(outputs["std"], 1e-12))
        xH = dm.xH[dm.test_idx][: len(pit), len(dm.redshifts) // 2]  # DDP: rank 0 holds the first part
        files.append(out_dir / "coverage.md")
        files[-1].write_text(report.coverage_markdown(report.coverage_table(pit, xH, dm.parameters)) + "\n")
        figures["pit"] = report.pit_histograms(pit, dm.parameters)
        figures["coverage_curve"] = report.coverage_curves(pit, dm.parameters)
    if confusion:
        figures["confusion_matrices"] = report.confusion_matrices(confusion, dm.parameters)
    if dm.sigma is not None:  # an observation: what the instrument sees of a few test spectra
        figures["observed_spectra"] = report.observed_spectra(dm.k, dm.delta[dm.test_idx[:4]], dm.sigma, dm.redshifts)
    if run is None:
        save_figures(figures, out_dir)
        return
    run.log_figures(figures)
    for path in files:  # only this report's files: a coverage.md left by an earlier run is not logged
        run.log_file(path)


def model_card(model: ParameterEstimator) -> dict[str, Any]:
    """What reusing the model needs besides its weights: grids, input scaling, target scaling, class edges."""
    t, c = model.transform, model.task.codec
    return {"parameters": model.param_names, "redshifts": model.meta.get("redshifts"), "k": model.meta.get("k"),
            "kept_bins": t.kept_bins.tolist(),
            "features": {"log10": bool(t.log10), "floor": t.floor.tolist(), "mean": t.mean.tolist(), "std": t.std.tolist()},
            "targets": {"mean": c.mean.tolist(), "std": c.std.tolist(), "class_edges": c.edges.tolist()},
            "lineage": model.meta.get("lineage")}
