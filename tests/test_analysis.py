"""astrops.analysis without training: the metrics table's exact text, the published reference rows,
one learning-curve grouping for both commands, the run report's files, and a light package
import."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources, util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT

from astrops import parameters
from astrops.analysis import compare, learning_curve, report
from astrops.analysis.run_report import report_results
from astrops.entry.analysis import compare_main, learning_curve_main

REGRESSION = (("RMSE", "RMSE"), ("MAE", "MAE"), ("MSE", "MSE"), ("R2-Score", "R2"))
CLASSIFICATION = (
    ("Accuracy", "acc"),
    ("Acc ±1", "acc_pm1"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "F1"),
    ("R2 (class centre)", "R2"),
)
PARAMS = list(parameters.NAMES)
RESULTS = {
    f"test/{k}/{p}": 0.1 * i + 0.01 * j
    for i, k in enumerate(
        ("RMSE", "MAE", "MSE", "R2", "acc", "acc_pm1", "precision", "recall", "F1")
    )
    for j, p in enumerate(PARAMS)
}
del RESULTS["test/acc_pm1/R_BUBBLE_MAX"]  # a missing metric shows as nan, in its own column


def test_metrics_table_text_is_unchanged():
    """The exact text the kind-switching version produced for each kind, from the columns alone."""
    assert report.metrics_table(RESULTS, PARAMS, REGRESSION) == (
        "| Variable | RMSE | MAE | MSE | R2-Score |\n|---|---|---|---|---|\n"
        "| HII_EFF_FACTOR | 0.0000 | 0.1000 | 0.2000 | 0.3000 |\n"
        "| ION_Tvir_MIN | 0.0100 | 0.1100 | 0.2100 | 0.3100 |\n"
        "| R_BUBBLE_MAX | 0.0200 | 0.1200 | 0.2200 | 0.3200 |"
    )
    assert report.metrics_table(RESULTS, PARAMS, CLASSIFICATION) == (
        "| Variable | Accuracy | Acc ±1 | Precision | Recall | F1 | R2 (class centre) |\n"
        "|---|---|---|---|---|---|---|\n"
        "| HII_EFF_FACTOR | 0.4000 | 0.5000 | 0.6000 | 0.7000 | 0.8000 | 0.3000 |\n"
        "| ION_Tvir_MIN | 0.4100 | 0.5100 | 0.6100 | 0.7100 | 0.8100 | 0.3100 |\n"
        "| R_BUBBLE_MAX | 0.4200 | nan | 0.6200 | 0.7200 | 0.8200 | 0.3200 |"
    )
    table = report.metrics_table(
        {k.replace("test/", "test_informative/"): v for k, v in RESULTS.items()},
        PARAMS[:1],
        REGRESSION,
        stage="test_informative",
    )
    assert table.splitlines()[-1] == "| HII_EFF_FACTOR | 0.0000 | 0.1000 | 0.2000 | 0.3000 |"


def test_tasks_carry_the_table_columns():
    from astrops.models import ClassificationTask, GaussianTask, RegressionTask

    assert RegressionTask.table_columns == GaussianTask.table_columns == REGRESSION
    assert ClassificationTask.table_columns == CLASSIFICATION


def test_parameters_have_one_home():
    assert tuple(parameters.UNITS) == tuple(parameters.LABELS) == parameters.NAMES
    assert parameters.ordered(["x", "R_BUBBLE_MAX", "HII_EFF_FACTOR", "R_BUBBLE_MAX", "a"]) == [
        "HII_EFF_FACTOR",
        "R_BUBBLE_MAX",
        "a",
        "x",
    ]


def run(n_train: int | None, r2: float, **tags: str) -> SimpleNamespace:
    """A stand-in for an MLflow Run: what the analysis reads (tags, params, metrics, run id)."""
    tags = {"model": "dense", "task": "regression", "redshifts": "[8.0]", **tags}
    if n_train is not None:
        tags["n_train"] = str(n_train)
    metrics = {f"test/{m}/{p}": r2 + j for m in ("R2", "RMSE") for j, p in enumerate(PARAMS)}
    metrics["test/R2/overall"] = r2
    return SimpleNamespace(
        info=SimpleNamespace(run_id=f"run{n_train}{r2}"),
        data=SimpleNamespace(tags=tags, params={"seed": "1"}, metrics=metrics),
    )


def test_published_reference_is_package_data_and_reaches_the_table():
    published = json.loads(
        resources.files("astrops.analysis").joinpath(compare.PUBLISHED).read_text()
    )["rows"]
    assert compare.published_reference() == published
    assert published["seed study: cnn regression (published)"]["R2"]["HII_EFF_FACTOR"] == 0.776
    assert all(set(by_p) == set(PARAMS) for row in published.values() for by_p in row.values())
    table = compare.summary_table(
        compare.runs_table([run(100, 0.5, overrides="seed=1"), run(100, 0.7)])
    )
    rows = table.set_index("configuration")
    for name, ref in published.items():
        assert rows.loc[name, "runs"] == ""
        for p in PARAMS:
            assert rows.loc[name, f"R2/{p}"] == f"{ref['R2'][p]:.4f}"
            assert rows.loc[name, f"RMSE/{p}"] == f"{ref['RMSE'][p]:.4f}"
        # the runs have no MAE: no column for the reference
        assert "MAE/HII_EFF_FACTOR" not in rows.columns
    assert rows.loc["dense regression", "R2/HII_EFF_FACTOR"] == "0.6000 ± 0.1414"
    assert rows.loc["seed study: dense regression (published)", "R2/ION_Tvir_MIN"] == "0.8084"


def test_runs_table_takes_parameter_names_from_the_metrics():
    frame = compare.runs_table([run(100, 0.5)])
    assert [c for c in frame.columns if c.startswith("R2/")] == [f"R2/{p}" for p in PARAMS]
    renamed = run(100, 0.5)
    renamed.data.metrics = {"test/R2/zeta": 0.5}
    assert [c for c in compare.runs_table([renamed]).columns if "/" in c] == [
        f"{m}/zeta" for m in compare.METRICS
    ]


def test_one_learning_curve_grouping_for_both_commands():
    runs = [
        run(100, 0.5, overrides="data.train_size=100 seed=1"),
        run(100, 0.7, overrides="data.train_size=100"),
        run(400, 0.9, overrides="data.train_size=400"),
        run(None, 0.1),
        # a configuration at one size only: no curve in the comparison
        run(200, 0.3, model="cnn"),
    ]
    by_z = learning_curve.group_runs(runs, lambda tags: tags["redshifts"])
    assert sorted(by_z) == [("[8.0]", 100), ("[8.0]", 200), ("[8.0]", 400)]
    assert (
        by_z[("[8.0]", 100)]["HII_EFF_FACTOR"] == [0.5, 0.7]
        and "overall" not in by_z[("[8.0]", 100)]
    )
    assert (
        learning_curve.table(by_z)
        .splitlines()[2]
        .startswith("| [8.0] | 100 | 2 | 0.600 ± 0.141 |")
    )
    by_config = compare.learning_curve_groups(runs)
    assert sorted(by_config) == [("dense regression", 100), ("dense regression", 400)]
    assert by_config[("dense regression", 100)] == by_z[("[8.0]", 100)]
    fig = learning_curve.figure(by_config, label=str)
    assert len(fig.axes) == 3 and fig.axes[0].get_legend_handles_labels()[1] == [
        "dense regression"
    ]


def test_cli_refuse_a_missing_store_or_experiment_in_one_line(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for main in (
        lambda: compare_main(
            ["nope", "--tracking-uri", uri, "--out", str(tmp_path / "cmp"), "--no-log"]
        ),
        lambda: learning_curve_main(["--experiment", "nope", "--tracking-uri", uri]),
    ):
        assert main() == 2
        err = capsys.readouterr().err
        assert (
            err
            == f"error: no MLflow database at {uri}: give the --tracking-uri the runs were logged "
            "to\n"
        )
        assert not (tmp_path / "mlflow.db").exists()  # a read-only command creates no database
    from astrops.tracking import prepare_experiment

    prepare_experiment(uri, "astrops")
    capsys.readouterr()
    assert (
        compare_main(["nope", "--tracking-uri", uri, "--out", str(tmp_path / "cmp"), "--no-log"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: no MLflow experiment 'nope'") and err.count("\n") == 1
    assert (
        compare_main(
            ["astrops", "--tracking-uri", uri, "--out", str(tmp_path / "cmp"), "--no-log"]
        )
        == 2
    )
    assert (
        capsys.readouterr().err
        == "error: no finished training runs in experiment 'astrops' match the filter\n"
    )


class FakeRun:
    """Records what the report logs (the TrackedRun methods it uses)."""

    def __init__(self):
        self.figures: list[str] = []
        self.files: list[str] = []

    def log_figures(self, figures: dict) -> None:
        self.figures += list(figures)

    def log_file(self, path, artifact_dir=None) -> None:
        assert Path(path).is_file()
        self.files.append(Path(path).name)


def data_module(n: int = 40) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    return SimpleNamespace(
        parameters=PARAMS,
        dataset=SimpleNamespace(name="toy"),
        test_idx=np.arange(n),
        # sigma: no observation
        xH=rng.uniform(0, 1, (n, 1)),
        redshifts=[8.0],
        sigma=None,
    )


@pytest.mark.parametrize("tracked", [False, True])
def test_run_report_saves_or_logs(tmp_path, capsys, tracked):
    rng = np.random.default_rng(1)
    true = rng.normal(size=(40, 3))
    outputs = {
        "true": true,
        "pred": true + rng.normal(size=true.shape) * 0.1,
        "std": np.full(true.shape, 0.1),
    }
    history = [
        {"epoch": e, "train/loss": 1.0 / (e + 1), "val/loss": 1.2 / (e + 1)} for e in range(3)
    ]
    (tmp_path / "coverage.md").write_text("stale\n")
    fake = FakeRun() if tracked else None
    metrics = report_results(
        data_module(), REGRESSION, RESULTS, outputs, tmp_path, run=fake, history=history
    )
    assert "Test metrics (toy, 40 test spectra):\n| Variable | RMSE |" in capsys.readouterr().out
    assert (tmp_path / "metrics_table.md").read_text() == report.metrics_table(
        RESULTS, PARAMS, REGRESSION
    ) + "\n"
    assert (tmp_path / "coverage.md").read_text().startswith("| x̄_HI bin |")
    names = [
        "training_curves",
        "pred_vs_true",
        "coverage_curve",
        "sbc",
        "tarp",
        *(f"corner_{i}" for i in range(6)),
    ]
    calibration_files = ["coverage_curve.json", "calibration.json", "coverage.md"]
    assert set(metrics) == {*(f"test/sbc_p/{p}" for p in PARAMS), "test/tarp_atc"}
    if tracked:
        assert fake.figures == names and fake.files == ["metrics_table.md", *calibration_files]
        assert not list(tmp_path.glob("*.png"))
    else:
        assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(names)
    # no std: no coverage file is logged, even though an earlier run left one in the directory
    fake = FakeRun()
    assert (
        report_results(
            data_module(),
            CLASSIFICATION,
            RESULTS,
            {k: outputs[k] for k in ("true", "pred")},
            tmp_path,
            run=fake,
            confusion=[np.eye(4)] * 3,
        )
        == {}
    )
    assert fake.files == ["metrics_table.md"] and fake.figures == [
        "pred_vs_true",
        "confusion_matrices",
    ]


def test_analysis_package_is_light_and_old_paths_are_gone():
    code = (
        "import sys, astrops.analysis, astrops.parameters; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch', "
        "'mlflow', 'pandas')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    for old in ("compare", "learning_curve", "plots", "report", "saliency"):
        assert util.find_spec(f"astrops.{old}") is None, (
            f"astrops.{old} is back: the module is astrops.analysis.{old}"
        )
