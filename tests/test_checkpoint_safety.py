"""A checkpoint is data, never code: every loader builds only registry classes from plain values.

Each hostile config below was crafted as an attacker would (issue #12): Hydra walks module
attributes, so ``astrops.checkpoints.shutil.copyfile`` (then ``astrops.ensemble.shutil.copyfile``)
and ``astrops.store.files.os.makedirs`` once ran from a checkpoint. The markers prove nothing ran;
every loader path is exercised.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import compose_cfg, run_entry

from astrops import checkpoints
from astrops.errors import InputError, ModelSpecError
from astrops.inference import load_model, read_checkpoint
from astrops.models.registry import build
from astrops.training import train


def hostile_cases(tmp):
    src, copied, made = tmp / "secret.txt", tmp / "copied.txt", tmp / "made_dir"
    src.write_text("secret")
    nested_copy = {
        "_target_": "astrops.checkpoints.shutil.copyfile",
        "_args_": [str(src), str(copied)],
    }
    return {
        "nested _target_ under a backbone key": (
            "model",
            lambda m: {**m, "activation": nested_copy},
            copied,
        ),
        "non-registry _target_ inside astrops": (
            "model",
            lambda m: {"_target_": "astrops.store.files.os.makedirs", "name": str(made)},
            made,
        ),
        "_args_ beside a registry class": (
            "task",
            lambda t: {**t, "_args_": [str(src), str(copied)]},
            copied,
        ),
        "_partial_ on a task": ("task", lambda t: {**t, "_partial_": True}, None),
        "unknown key": ("model", lambda m: {**m, "hidden_sizes": [4]}, None),
        "foreign module": (
            "model",
            lambda m: {"_target_": "os.system", "command": f"touch {made}"},
            made,
        ),
        "absurd width": ("model", lambda m: {**m, "hidden": [10**9]}, None),
    }


def tamper(src: str, dst, part: str, change) -> None:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["astrops"][part] = change(ckpt["astrops"][part])
    torch.save(ckpt, dst)


def test_every_hostile_config_is_refused_by_load_model_and_runs_nothing(
    dense_checkpoint, tmp_path
):
    assert load_model(dense_checkpoint).predict  # the untouched checkpoint loads
    for name, (part, change, marker) in hostile_cases(tmp_path).items():
        bad = tmp_path / "bad.ckpt"
        tamper(dense_checkpoint, bad, part, change)
        with pytest.raises(InputError, match="refusing to build it") as err:
            load_model(bad)
        assert "\n" not in str(err.value), name
        assert marker is None or not marker.exists(), f"{name}: the checkpoint ran code"


def test_predict_ensemble_and_resume_paths_refuse_the_nested_target(dense_checkpoint, tmp_path):
    (part, change, marker) = hostile_cases(tmp_path)["nested _target_ under a backbone key"]
    bad = tmp_path / "bad.ckpt"
    tamper(dense_checkpoint, bad, part, change)
    # predict.py (a subprocess, as a user runs it)
    example = tmp_path / "in.npz"
    np.savez(example, k=read_checkpoint(dense_checkpoint)["astrops"]["k"], delta=np.ones((2, 22)))
    out = tmp_path / "out.csv"
    proc = run_entry(
        "predict.py",
        f"ckpt_path={bad}",
        f"input={example}",
        f"output={out}",
        f"hydra.run.dir={tmp_path}/h",
        check=False,
    )
    assert proc.returncode == 2 and "refusing to build it" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not out.exists()
    # an ensemble directory whose manifest lists a hostile member next to a good one
    ens = tmp_path / "ensemble"
    ens.mkdir()
    shutil.copyfile(dense_checkpoint, ens / "member_0.ckpt")
    shutil.copyfile(bad, ens / "member_1.ckpt")
    (ens / "manifest.json").write_text(
        json.dumps(
            {
                "format": "astrops-ensemble/1",
                "members": ["member_0.ckpt", "member_1.ckpt"],
                "calibration": {},
            }
        )
    )
    with pytest.raises(InputError, match="refusing to build it"):
        load_model(ens)
    # resuming training from it
    cfg = compose_cfg(
        "train", [f"paths.output_dir={tmp_path}/run", "logger=none", f"ckpt_path={bad}"]
    )
    with pytest.raises(InputError, match="refusing to build it"):
        train(cfg)
    assert not marker.exists()


def test_resuming_from_a_pickled_checkpoint_never_advises_weights_only_false(tmp_path):
    class WritesAFile:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "last.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": WritesAFile()}))
    cfg = compose_cfg(
        "train", [f"paths.output_dir={tmp_path}/run", "logger=none", f"ckpt_path={evil}"]
    )
    with pytest.raises(InputError, match="not a safe astrops checkpoint") as err:
        train(cfg)
    assert "weights_only" not in str(err.value) and err.value.__cause__ is None
    assert not (tmp_path / "pwned").exists()


def test_registry_is_the_only_way_configs_become_modules(dense_checkpoint):
    meta = read_checkpoint(dense_checkpoint)["astrops"]
    backbone = build(meta["model"], "backbone", input_shape=tuple(meta["input_shape"]))
    assert backbone.out_features == meta["model"]["hidden"][-1]
    # a file cannot set what the loader supplies
    with pytest.raises(ModelSpecError, match=r"unknown keys \['input_shape'\]"):
        build({**meta["model"], "input_shape": [1, 2]}, "backbone", input_shape=(1, 20))
    with pytest.raises(ModelSpecError, match="not one of astrops' task classes"):
        build({"_target_": "astrops.models.backbones.DenseBackbone"}, "task")


def test_a_new_head_is_one_class_and_only_astrops_heads_qualify():
    """A Task subclass defined in astrops.models registers itself; one defined anywhere else never
    does."""
    from astrops.models.registry import task_classes
    from astrops.models.tasks import RegressionTask

    class Elsewhere(RegressionTask):  # e.g. a user's script: not buildable from a file
        pass

    new_head = type("NewHead", (RegressionTask,), {"__module__": "astrops.models.flows"})
    table = task_classes()
    assert table["astrops.models.flows.NewHead"] is new_head
    assert not any(cls is Elsewhere for cls in table.values())
    with pytest.raises(ModelSpecError, match="not one of astrops' task classes"):
        build({"_target_": f"{__name__}.Elsewhere"}, "task")


def test_damaged_metadata_is_named_not_a_traceback(tmp_path):
    ckpt = tmp_path / "damaged.ckpt"
    torch.save(
        {
            "astrops": {
                "model": {"_target_": "astrops.models.backbones.DenseBackbone"},
                "task": {},
            },
            "state_dict": {},
        },
        ckpt,
    )
    with pytest.raises(
        InputError,
        match=r"metadata fields \['k', 'redshifts', .*\] are missing, of the wrong type",
    ):
        load_model(ckpt)


@pytest.mark.parametrize(
    "field, change, message",
    [
        (
            "prior_box",
            lambda m: {k: v for k, v in m["prior_box"].items() if k != "R_BUBBLE_MAX"},
            r"\['prior_box'\]",
        ),
        (
            "prior_box",
            lambda m: {**m["prior_box"], "ION_Tvir_MIN": [float("nan"), 6.0]},
            r"\['prior_box'\]",
        ),
        (
            "prior_box",
            lambda m: {**m["prior_box"], "ION_Tvir_MIN": [6.0, 4.0]},
            r"\['prior_box'\]",
        ),
        ("kept_bins", lambda m: [*m["kept_bins"][:-1], 99], r"\['kept_bins'\]"),
        ("kept_bins", lambda m: [-1, *m["kept_bins"][1:]], r"\['kept_bins'\]"),
        ("input_shape", lambda m: [1, m["input_shape"][1] + 1], r"\['input_shape'\]"),
        ("n_classes", lambda m: 10**12, r"\['n_classes'\]"),
        ("mlflow_run_id", lambda m: "../../x", "is not an MLflow run id"),
        ("model", lambda m: {**m["model"], "hidden": [65_536] * 64}, "more than 1e\\+08 weights"),
        (
            "model",
            lambda m: {**m["model"], "hidden": [128, 128, 128]},
            "missing or of another shape",
        ),
    ],
)
def test_inconsistent_metadata_is_refused_before_anything_is_allocated(
    dense_checkpoint, tmp_path, field, change, message
):
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    ckpt["astrops"][field] = change(ckpt["astrops"])
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(InputError, match=message) as err:
        load_model(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "manifest, message",
    [
        ("[1, 2]", "has format 'list'"),
        ("{not json", "is not readable JSON"),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", "member_0.ckpt"]}',
            "2 to 64 distinct",
        ),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", ".."]}',
            "2 to 64 distinct",
        ),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", "member_1.ckpt"], '
            '"calibration": {"var_scale": [-1, 1, 1]}}',
            "finite positive numbers",
        ),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", "member_1.ckpt"], '
            '"calibration": {"var_scale": [NaN, 1, 1]}}',
            "finite positive numbers",
        ),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", "member_1.ckpt"], '
            '"calibration": {"os.system": [1, 1, 1]}}',
            "may only map",
        ),
        (
            '{"format": "astrops-ensemble/1", "members": ["member_0.ckpt", "member_1.ckpt"], '
            '"calibration": {"var_scale": [1, 1]}}',
            "one entry per parameter",
        ),
    ],
)
def test_malformed_manifests_are_refused_in_one_line(
    dense_checkpoint, tmp_path, manifest, message
):
    for i in range(2):
        shutil.copyfile(dense_checkpoint, tmp_path / f"member_{i}.ckpt")
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(InputError, match=message) as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value)


def test_old_task_name_is_read_as_task_config(dense_checkpoint, tmp_path):
    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    config = ckpt["astrops"].pop("task_config", None) or "regression"
    assert read_checkpoint(dense_checkpoint)["astrops"]["task_config"] == config
    ckpt["astrops"]["task_name"] = config  # written before the rename
    torch.save(ckpt, tmp_path / "old.ckpt")
    meta = read_checkpoint(tmp_path / "old.ckpt")["astrops"]
    assert meta["task_config"] == config and "task_name" not in meta
    assert load_model(tmp_path / "old.ckpt").meta["task_config"] == config


def test_saved_ensemble_reads_back_through_the_checkpoint_door(dense_checkpoint, tmp_path):
    factors = {"var_scale": torch.tensor([1.5, 2.0, 0.5])}
    directory = checkpoints.save_ensemble(
        tmp_path / "ens",
        [dense_checkpoint, dense_checkpoint],
        factors,
        {"kind": "regression", "seeds": [1, 2]},
    )
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json",
        "member_0.ckpt",
        "member_1.ckpt",
    ]
    manifest = checkpoints.read_manifest(directory)
    assert manifest["format"] == checkpoints.FORMAT and manifest["calibration"] == {
        "var_scale": [1.5, 2.0, 0.5]
    }
    model, meta = checkpoints.load_ensemble(directory)
    assert torch.equal(model.calibration["var_scale"], factors["var_scale"]) and meta["ensemble"][
        "seeds"
    ] == [1, 2]
    with pytest.raises(FileNotFoundError, match="without manifest.json"):
        checkpoints.read_manifest(tmp_path)


def _mlflow_model_dir(root, ckpt, extra_flavour: bool = False, **pyfunc_changes):
    """An MLflow Model directory shaped like the ones training logs, with ``pyfunc_changes`` to its
    flavour."""
    import yaml

    root.mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copyfile(ckpt, root / "data" / "model.ckpt")
    pyfunc = {
        "loader_module": "astrops.tracking.mlflow_model",
        "data": "data/model.ckpt",
        "code": None,
        "python_version": "3.11.7",
        **pyfunc_changes,
    }
    flavors = {
        "python_function": pyfunc,
        **({"sklearn": {"pickled_model": "model.pkl"}} if extra_flavour else {}),
    }
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    return root


def test_a_downloaded_mlflow_model_loads_only_when_it_names_astrops_loader(
    dense_checkpoint, tmp_path
):
    """astrops.load_model on an MLflow Model directory reads its MLmodel (never imports what it
    names) and loads the checkpoint inside through the allowlisted loader; anything else is refused
    in one line."""
    good = load_model(_mlflow_model_dir(tmp_path / "good", dense_checkpoint))
    assert good.parameters == load_model(dense_checkpoint).parameters
    marker = tmp_path / "pwned"
    evil_code = tmp_path / "evil" / "code" / "astrops"
    evil_code.mkdir(parents=True)
    (evil_code / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    cases = {
        "loader": {"loader_module": "mlflow.sklearn"},
        "code": {"code": "code"},
        "outside": {"data": "../good/data/model.ckpt"},
        "pickle": {"python_model": "python_model.pkl"},
        "flavour": {"extra_flavour": True},
    }
    for name, change in cases.items():
        directory = _mlflow_model_dir(tmp_path / f"bad_{name}", dense_checkpoint, **change)
        with pytest.raises(InputError, match="MLmodel|MLflow Model astrops logged") as exc:
            load_model(directory)
        assert "\n" not in str(exc.value), name
    assert not marker.exists()
