"""Learning curves read back from real MLflow runs of a train_size sweep."""

from __future__ import annotations

from astrops.entry.analysis import learning_curve_main as main
from astrops.training import train


def test_learning_curve_groups_runs_by_training_size(tmp_path, train_cfg, capsys):
    for n, seed in ((100, 1), (100, 2), (400, 1)):
        train(train_cfg(f"data.train_size={n}", f"seed={seed}", "trainer.max_epochs=2"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert (
        main(["--experiment", "astrops", "--tracking-uri", uri, "--out", str(tmp_path / "lc.png")])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| [8.0]")]
    assert [r.split("|")[2].strip() for r in rows] == ["100", "400"]
    assert [r.split("|")[3].strip() for r in rows] == ["2", "1"]  # seeds per point
    assert (tmp_path / "lc.png").stat().st_size > 0
    assert (
        main(["--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "x.png")])
        == 2
    )
