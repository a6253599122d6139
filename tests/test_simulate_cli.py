"""simulate.py end to end: resumable after SIGKILL, safe with concurrent writers, refuses bad input."""

from __future__ import annotations

import signal
import time

import pyarrow.parquet as pq
import pytest
from conftest import popen_entry, run_entry

from astrops.store import Store


def only_dataset(store_dir):
    (ds,) = Store(store_dir).datasets()
    return ds


def test_simulate_fills_store_and_rerun_computes_nothing(tmp_path, small_sim_overrides):
    run_entry("simulate.py", *small_sim_overrides, "simulation.n=3")
    ds = only_dataset(tmp_path / "store")
    r = ds.load()
    assert len(r) == 3 and r.delta.shape == (3, 1, len(ds.k))
    assert ds.meta["redshifts"] == [8.0] and ds.spec["user_params"]["HII_DIM"] == 20
    versions = r.table["versions"][0].as_py()
    assert "21cmFAST" in versions and "astrops" in versions
    out = run_entry("simulate.py", *small_sim_overrides, "simulation.n=3")
    assert "0 simulated" in out.stdout + out.stderr
    out = run_entry("simulate.py", *small_sim_overrides, "simulation.n=4")  # extends the same design
    assert "1 simulated" in out.stdout + out.stderr
    assert len(ds.load()) == 4


def test_resume_after_sigkill(tmp_path, small_sim_overrides):
    n = 8
    proc = popen_entry("simulate.py", *small_sim_overrides, f"simulation.n={n}", cwd=tmp_path)
    store_dir = tmp_path / "store"
    deadline = time.time() + 240
    k = 0
    while time.time() < deadline and proc.poll() is None:
        if Store(store_dir).datasets():
            k = len(only_dataset(store_dir).load())
            if k >= 2:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = only_dataset(store_dir)
    k = len(ds.load())
    assert 0 < k < n, f"kill must land mid-run (found {k} of {n})"
    before = set(ds.load().keys)
    out = run_entry("simulate.py", *small_sim_overrides, f"simulation.n={n}")
    assert f"{n - k} simulated" in out.stdout + out.stderr
    after = ds.load()
    assert len(after) == n and set(after.keys) >= before
    assert sum(pq.read_table(f).num_rows for f in ds.record_files()) == n  # compacted, no duplicates on disk


def test_two_concurrent_writers(tmp_path, small_sim_overrides):
    n = 6
    t0 = time.time()
    procs = [popen_entry("simulate.py", *small_sim_overrides, f"simulation.n={n}", f"simulation.shard={s}",
                         "simulation.num_shards=2", f"hydra.run.dir={tmp_path}/h{s}", cwd=tmp_path) for s in (0, 1)]
    # a third, identical to the first, races it for the same points
    procs.append(popen_entry("simulate.py", *small_sim_overrides, f"simulation.n={n}", "simulation.shard=0",
                             "simulation.num_shards=2", f"hydra.run.dir={tmp_path}/h2", cwd=tmp_path))
    overlapped = False
    while any(p.poll() is None for p in procs) and time.time() - t0 < 300:
        # records already written while every writer is still running: the runs overlap in time
        if not overlapped and all(p.poll() is None for p in procs) and Store(tmp_path / "store").datasets():
            overlapped = len(only_dataset(tmp_path / "store").load()) > 0
        time.sleep(0.05)
    for p in procs:
        assert p.wait(timeout=10) == 0, p.stderr.read()
    assert overlapped, "the writers did not run at the same time"
    ds = only_dataset(tmp_path / "store")
    r = ds.load(include_failed=True)
    assert len(r) == n and len(set(r.keys)) == n
    assert sorted(r.table["index"].to_pylist()) == list(range(n))
    ds.compact()
    assert sum(pq.read_table(f).num_rows for f in ds.record_files()) == n


@pytest.mark.parametrize("override,needle", [
    ("simulation.design.priors.ION_Tvir_MIN=[6.0,4.0]", "lower bound 6.0 is not below upper bound 4.0"),
    ("simulation.design.priors.HII_EFF_FACTOR=[2.0,200.0]", "HII_EFF_FACTOR lower bound 2.0 < 5"),
    ("simulation.design.priors.R_BUBBLE_MAX=[5.0,30.0]", "BOX_LEN/3"),
    ("simulation.design.priors.ION_Tvir_MIN=[3.5,6.0]", "outside [4, 6]"),
    ("simulation.n=0", "positive integer"),
    ("+simulation.simulator.user_params.HII_DIMM=30", "unknown 21cmFAST user_params ['HII_DIMM']"),
])
def test_bad_input_one_line_nothing_written(tmp_path, small_sim_overrides, override, needle):
    proc = run_entry("simulate.py", *small_sim_overrides, override, check=False)
    assert proc.returncode != 0
    err_lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert any(needle in ln for ln in err_lines), proc.stderr
    assert len(err_lines) == 1, proc.stderr
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").datasets()


def test_unknown_config_key_is_named_with_its_fix(tmp_path, small_sim_overrides):
    """Hydra's own message (several lines) leads with the key and says how to add one on purpose."""
    proc = run_entry("simulate.py", *small_sim_overrides, "simulation.nn=5", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Could not override 'simulation.nn'." and "+simulation.nn=5" in lines[1]
    assert not (tmp_path / "store").exists()


def test_unwritable_store_path(tmp_path, small_sim_overrides):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    proc = run_entry("simulate.py", *small_sim_overrides, f"paths.store_dir={tmp_path}/blocker/store", check=False)
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "paths.store_dir" in proc.stderr


def test_submitit_shards_fill_one_store(tmp_path, small_sim_overrides):
    """Cluster path, run locally: the submitit engine runs two shard jobs; the store gets their union."""
    n = 6
    overrides = [o for o in small_sim_overrides if not o.startswith("hydra.run")]
    run_entry("simulate.py", "-m", "hydra/launcher=local", *overrides, f"simulation.n={n}",
              "simulation.shard=0,1", "simulation.num_shards=2", f"hydra.sweep.dir={tmp_path}/sweep", timeout=600)
    ds = only_dataset(tmp_path / "store")
    r = ds.load()
    assert len(r) == n and sorted(r.table["index"].to_pylist()) == list(range(n))
    assert len(list((tmp_path / "sweep").glob("**/*_submitted.pkl"))) == 2  # two submitit jobs ran
