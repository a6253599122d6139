"""Bad configuration values are refused at the boundary, in one line, before any work (issue #12).

hypothesis drives :func:`astrops.validation.validate` with generated values and compares its
verdict with an independent statement of each key's contract; a few real subprocesses per entry
point check exit status 2, one line on stderr, no traceback, and that the store, the MLflow
database and the output path are untouched.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_entry, run_in_process
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data import toy_store

from astrops.entry.rules import PREDICT_RULES, SIMULATE_RULES, TRAIN_RULES
from astrops.errors import ConfigValueError, InputError
from astrops.limits import MAX_MEMBERS
from astrops.spectra_files import read_spectra_npz
from astrops.validation import validate


def _int(v, lo=None, hi=None):
    return type(v) is int and (lo is None or v >= lo) and (hi is None or v <= hi)


# The contract of each key, written independently of the rule tables.
CONTRACT = {
    "seed": lambda v: _int(v, 0, 2**32 - 1),
    "data.split_seed": lambda v: _int(v, 0, 2**32 - 1),
    "data.batch_size": lambda v: _int(v, 1),
    "data.eval_batch_size": lambda v: _int(v, 1),
    "ensemble.members": lambda v: _int(v, 1, MAX_MEMBERS),
    "data.n_classes": lambda v: _int(v, 2, 10_000),
    "data.test_fraction": lambda v: type(v) in (int, float) and 0 < v < 1,
    "data.val_fraction": lambda v: type(v) in (int, float) and 0 < v < 1,
    "data.redshifts": lambda v: (
        isinstance(v, list)
        and len(v) > 0
        and len(set(v)) == len(v)
        and all(type(z) in (int, float) and math.isfinite(z) and z > 0 for z in v)
    ),
    "simulation.n": lambda v: _int(v, 1),
    "simulation.workers": lambda v: _int(v, 1, 4096),
    "simulation.n_threads": lambda v: _int(v, 1, 4096),
    "simulation.sims_per_ic": lambda v: _int(v, 1),
    "simulation.base_seed": lambda v: _int(v, 0, 2**32 - 1),
    "simulation.sampler": lambda v: v in ("uniform", "lhs", "fixed"),
    "samples": lambda v: v is None or _int(v, 0, 1_000_000),
    "plot": lambda v: v is None or isinstance(v, bool),
    "observation.k_units": lambda v: v in ("1/Mpc", "h/Mpc"),
    "observation.k_bins": lambda v: (
        v is None
        or (
            isinstance(v, list)
            and len(v) >= 2
            and all(type(x) in (int, float) and math.isfinite(x) and x > 0 for x in v)
            and all(a < b for a, b in zip(v, v[1:], strict=False))
        )
    ),
    "observation.min_k": lambda v: (
        v is None or (type(v) in (int, float) and math.isfinite(v) and v >= 0)
    ),
}
RULES = {r.key: r for r in (*TRAIN_RULES, *SIMULATE_RULES, *PREDICT_RULES)}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["uniform", "lhs", "", "8", "abc", "1/Mpc", "h/Mpc"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(sorted(CONTRACT)), value=values)
def test_validator_agrees_with_each_contract_and_speaks_one_line(key, value):
    if CONTRACT[key](value):
        validate({key: value}, [RULES[key]])
        return
    with pytest.raises(ConfigValueError) as err:
        validate({key: value}, [RULES[key]])
    msg = str(err.value)
    assert msg.startswith(f"{key}=") and "must be" in msg and "; " in msg and "\n" not in msg


def test_a_missing_mandatory_value_is_named(tmp_path):
    proc = run_entry(
        "predict.py", f"input={tmp_path}/x.npz", f"hydra.run.dir={tmp_path}/h", check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: ckpt_path is not set: it must be a checkpoint file or ensemble directory; "
        "pass the path train.py printed last"
    )


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under the roots with the hash of its bytes."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line_refusal(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    """A real MLflow sqlite store with one experiment, to prove refusals leave it alone."""
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp("mlflow")
    MlflowClient(f"sqlite:///{tmp}/mlflow.db").create_experiment("astrops")
    return tmp


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=abc", "seed='abc'"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.redshifts=[]", "data.redshifts=[]"),
        ("ensemble.members=0", "ensemble.members=0"),
        ("data.test_fraction=1.5", "data.test_fraction=1.5"),
        ("observation.k_units=Mpc", "observation.k_units='Mpc'"),
        ("observation.k_bins=[0.4,0.2]", "observation.k_bins=[0.4, 0.2]"),
    ],
)
def test_train_refuses_bad_values_and_touches_nothing(mlflow_db, tmp_path, override, key, capfd):
    before = snapshot(mlflow_db)
    proc = run_in_process(
        "train.py",
        override,
        f"logger.mlflow.tracking_uri=sqlite:///{mlflow_db}/mlflow.db",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    one_line_refusal(proc, key, "must be")
    assert snapshot(mlflow_db) == before and not (tmp_path / "run").exists()


def test_a_store_too_small_to_split_is_refused_before_any_run(mlflow_db, tmp_path, capfd):
    toy_store(tmp_path / "store", n=4, redshifts=(8.0,))
    before = snapshot(mlflow_db, tmp_path / "store")
    proc = run_in_process(
        "train.py",
        "data=store",
        f"paths.store_dir={tmp_path}/store",
        f"logger.mlflow.tracking_uri=sqlite:///{mlflow_db}/mlflow.db",
        f"paths.output_dir={tmp_path}/run",
        capfd=capfd,
    )
    one_line_refusal(proc, "4 spectra split into", "at least 2", "simulate more")
    assert snapshot(mlflow_db, tmp_path / "store") == before


def test_simulate_refuses_zero_threads_before_touching_the_store(
    tmp_path, small_sim_overrides, capfd
):
    toy_store(tmp_path / "store", n=3, redshifts=(8.0,))
    before = snapshot(tmp_path / "store")
    proc = run_in_process(
        "simulate.py",
        *small_sim_overrides,
        "simulation.n_threads=0",
        "simulation.n=2",
        capfd=capfd,
    )
    one_line_refusal(proc, "simulation.n_threads=0", "simulation.n_threads=1")
    assert snapshot(tmp_path / "store") == before


@pytest.mark.parametrize("case", ["missing directory", "a directory", "json"])
def test_predict_checks_the_output_path_before_any_work(tmp_path, case, capfd):
    output = {
        "missing directory": tmp_path / "nowhere" / "p.csv",
        "a directory": tmp_path,
        "json": tmp_path / "p.json",
    }[case]
    np.savez(tmp_path / "in.npz", k=np.ones(3), delta=np.ones(3))
    before = snapshot(tmp_path)
    proc = run_in_process(
        "predict.py",
        f"ckpt_path={tmp_path}/none.ckpt",
        f"input={tmp_path}/in.npz",
        f"output={output}",
        capfd=capfd,
    )
    one_line_refusal(proc, "output=")
    assert {k: v for k, v in snapshot(tmp_path).items() if "/h/" not in k} == before


def test_predict_names_what_is_wrong_with_the_input(tmp_path):
    proc = run_entry(
        "predict.py",
        "ckpt_path=x.ckpt",
        f"input={tmp_path}",
        f"hydra.run.dir={tmp_path}/h",
        check=False,
    )
    one_line_refusal(proc, "not a directory")
    np.savez(tmp_path / "nodelta.npz", k=np.ones(3))
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "text.npz").write_text("k,delta\n")
    with pytest.raises(InputError, match=r"lacks \['delta'\] \(it has \['k'\]\)"):
        read_spectra_npz(tmp_path / "nodelta.npz")
    with pytest.raises(InputError, match=r"lacks \['k', 'delta'\] \(it has \[\]\)"):
        read_spectra_npz(tmp_path / "empty.npz")
    with pytest.raises(InputError, match="is not an npz file"):
        read_spectra_npz(tmp_path / "text.npz")
    example = ROOT / "data" / "reference"
    with pytest.raises(InputError, match="is a directory"):
        read_spectra_npz(example)


def test_baselines_share_the_training_rules(mlflow_db, tmp_path):
    before = snapshot(mlflow_db)
    proc = run_entry(
        "baselines.py",
        "seed=-1",
        f"logger.mlflow.tracking_uri=sqlite:///{mlflow_db}/mlflow.db",
        f"hydra.run.dir={tmp_path}/h",
        check=False,
    )
    one_line_refusal(proc, "seed=-1", "must be an integer")
    assert snapshot(mlflow_db) == before


def test_store_import_config_problems_are_one_line_and_write_nothing(tmp_path, capsys):
    from astrops.entry.store import main as store_cli

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "params.csv").write_text("HII_EFF_FACTOR,ION_Tvir_MIN,R_BUBBLE_MAX\n50.0,5.0,10.0\n")
    np.savez(raw / "0.npz", k=np.ones(22), delta=np.ones(22))
    for extra, needle in (
        (["simulation.redshifts=[]"], "simulation.redshifts=[]: must be"),
        (["simulation.simulator.n_threads=0"], "simulation.simulator.n_threads=0: must be"),
        (["simulation.nn=3"], "Key 'nn' is not in struct"),
        (["--config", "nope"], "Could not find 'simulation/nope'"),
    ):
        assert (
            store_cli(
                ["import", str(tmp_path / "store"), *extra, "--csv", str(raw / "params.csv")]
            )
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "fix the simulation config" in err[0]
    assert not (tmp_path / "store").exists()


def test_export_refuses_record_keys_that_are_paths(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astrops.errors import StoreError
    from astrops.store import Store
    from astrops.store.seed_format import export_seed_format

    ds = toy_store(tmp_path / "store", n=3, redshifts=(8.0,))
    (part,) = sorted((ds.path / "records").glob("*.parquet"))
    table = pq.read_table(part)
    keys = table["key"].to_pylist()
    keys[0] = "../../../escaped"
    pq.write_table(
        table.set_column(table.schema.get_field_index("key"), "key", pa.array(keys)), part
    )
    with pytest.raises(StoreError, match="record keys that are not record hashes"):
        export_seed_format(Store(tmp_path / "store").dataset(), tmp_path / "out" / "a")
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("escaped*"))


def test_simulate_checks_the_key_the_simulator_reads(tmp_path, small_sim_overrides, capfd):
    proc = run_in_process(
        "simulate.py",
        *small_sim_overrides,
        "simulation.simulator.n_threads=0",
        "simulation.n=1",
        capfd=capfd,
    )
    one_line_refusal(proc, "simulation.simulator.n_threads=0")
    assert not (tmp_path / "store").exists()


def test_predict_never_overwrites_a_json_it_did_not_write_nor_crashes_on_long_names(
    tmp_path, capfd
):
    (tmp_path / "manifest.json").write_text('{"format": "astrops-ensemble/1"}')
    np.savez(tmp_path / "in.npz", k=np.ones(3), delta=np.ones(3))
    for output in (tmp_path / "manifest.csv", tmp_path / ("x" * 300 + ".csv")):
        proc = run_in_process(
            "predict.py",
            f"ckpt_path={tmp_path}/none.ckpt",
            f"input={tmp_path}/in.npz",
            f"output={output}",
            capfd=capfd,
        )
        one_line_refusal(proc, "output=")
    assert (tmp_path / "manifest.json").read_text() == '{"format": "astrops-ensemble/1"}'


def test_resuming_into_a_run_the_tracking_store_lacks_is_refused(dense_checkpoint, tmp_path):
    import torch
    from conftest import compose_cfg

    from astrops.errors import TrackingError
    from astrops.training import train

    ckpt = torch.load(dense_checkpoint, map_location="cpu", weights_only=True)
    ckpt["astrops"]["mlflow_run_id"] = "a" * 32
    torch.save(ckpt, tmp_path / "last.ckpt")
    cfg = compose_cfg(
        "train",
        [
            f"paths.output_dir={tmp_path}/run",
            f"ckpt_path={tmp_path}/last.ckpt",
            f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/elsewhere.db",
        ],
    )
    with pytest.raises(
        TrackingError, match=f"belongs to MLflow run {'a' * 32}, but .* does not exist"
    ):
        train(cfg)
    assert not (tmp_path / "elsewhere.db").exists() and not (tmp_path / "run").exists()
