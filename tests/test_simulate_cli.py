"""simulate.py end to end: resumable after SIGKILL, safe with concurrent writers, refuses bad
input."""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import popen_entry, run_entry, run_in_process

from astrops.simulation import Design, runner, simulate_into_store
from astrops.store import Store, record_key


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
    # extends the same design
    out = run_entry("simulate.py", *small_sim_overrides, "simulation.n=4")
    assert "1 simulated" in out.stdout  # the command's result, on stdout
    # progress=false: the progress lines reach the console (stderr) through Hydra's filtered
    # handler
    assert "simulations: 1/1 done" in out.stderr, out.stderr
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
    # compacted, no duplicates on disk
    assert sum(pq.read_table(f).num_rows for f in ds.record_files()) == n


def test_two_concurrent_writers(tmp_path, small_sim_overrides):
    n = 6
    t0 = time.time()
    procs = [
        popen_entry(
            "simulate.py",
            *small_sim_overrides,
            f"simulation.n={n}",
            f"simulation.shard={s}",
            "simulation.num_shards=2",
            f"hydra.run.dir={tmp_path}/h{s}",
            cwd=tmp_path,
        )
        for s in (0, 1)
    ]
    # a third, identical to the first, races it for the same points
    procs.append(
        popen_entry(
            "simulate.py",
            *small_sim_overrides,
            f"simulation.n={n}",
            "simulation.shard=0",
            "simulation.num_shards=2",
            f"hydra.run.dir={tmp_path}/h2",
            cwd=tmp_path,
        )
    )
    overlapped = False
    while any(p.poll() is None for p in procs) and time.time() - t0 < 300:
        # records already written while every writer is still running: the runs overlap in time
        if (
            not overlapped
            and all(p.poll() is None for p in procs)
            and Store(tmp_path / "store").datasets()
        ):
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


@pytest.mark.parametrize(
    "override,needle",
    [
        (
            "simulation.design.priors.ION_Tvir_MIN=[6.0,4.0]",
            "lower bound 6.0 is not below upper bound 4.0",
        ),
        (
            "simulation.design.priors.HII_EFF_FACTOR=[2.0,200.0]",
            "HII_EFF_FACTOR lower bound 2.0 < 5",
        ),
        ("simulation.design.priors.R_BUBBLE_MAX=[5.0,30.0]", "BOX_LEN/3"),
        ("simulation.design.priors.ION_Tvir_MIN=[3.5,6.0]", "outside [4, 6]"),
        ("simulation.n=0", "positive integer"),
        (
            "+simulation.simulator.user_params.HII_DIMM=30",
            "unknown 21cmFAST user_params ['HII_DIMM']",
        ),
    ],
)
def test_bad_input_one_line_nothing_written(
    tmp_path, small_sim_overrides, override, needle, capfd
):
    proc = run_in_process("simulate.py", *small_sim_overrides, override, capfd=capfd)
    assert proc.returncode != 0
    err_lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert any(needle in ln for ln in err_lines), proc.stderr
    assert len(err_lines) == 1, proc.stderr
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").datasets()


def test_unknown_config_key_is_named_with_its_fix(tmp_path, small_sim_overrides):
    """Hydra's own message (several lines) leads with the key and says how to add one on
    purpose."""
    proc = run_entry("simulate.py", *small_sim_overrides, "simulation.nn=5", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Could not override 'simulation.nn'." and "+simulation.nn=5" in lines[1]
    assert not (tmp_path / "store").exists()


def test_unwritable_store_path(tmp_path, small_sim_overrides):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    proc = run_entry(
        "simulate.py",
        *small_sim_overrides,
        f"paths.store_dir={tmp_path}/blocker/store",
        check=False,
    )
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "paths.store_dir" in proc.stderr


def test_submitit_shards_fill_one_store(tmp_path, small_sim_overrides):
    """Cluster path, run locally: the submitit engine runs two shard jobs; the store gets their
    union."""
    n = 6
    overrides = [o for o in small_sim_overrides if not o.startswith("hydra.run")]
    run_entry(
        "simulate.py",
        "-m",
        "hydra/launcher=local",
        *overrides,
        f"simulation.n={n}",
        "simulation.shard=0,1",
        "simulation.num_shards=2",
        f"hydra.sweep.dir={tmp_path}/sweep",
        timeout=600,
    )
    ds = only_dataset(tmp_path / "store")
    r = ds.load()
    assert len(r) == n and sorted(r.table["index"].to_pylist()) == list(range(n))
    assert len(list((tmp_path / "sweep").glob("**/*_submitted.pkl"))) == 2  # two submitit jobs ran


PRIORS = {"HII_EFF_FACTOR": [5.0, 200.0], "ION_Tvir_MIN": [4.0, 6.0], "R_BUBBLE_MAX": [5.0, 15.0]}


class Interrupted(Exception):
    pass


class FakeSimulator:
    """The simulator interface without 21cmFAST: instant records, every call remembered."""

    box_len, redshifts, n_threads = 50.0, [8.0], 1

    def __init__(self, stop_after: int | None = None, delay: float = 0.0):
        self.calls, self.stop_after, self.delay = [], stop_after, delay

    def k(self):
        return np.geomspace(0.1, 1.0, 5)

    def spec(self):
        return {"fake": True}

    def default_name(self):
        return "fake"

    def run(self, points):
        self.calls.append([p["index"] for p in points])
        if self.stop_after is not None and len(self.calls) > self.stop_after:
            raise Interrupted
        time.sleep(self.delay)
        return [
            {
                **p,
                "delta": np.ones((1, 5)),
                "xH": [0.5],
                "Tb": [1.0],
                "status": "ok",
                "error": "",
                "wall_time": self.delay,
            }
            for p in points
        ]


def test_streamed_design_skips_stored_points_groups_by_ic_and_logs_an_eta(tmp_path, caplog):
    design, sim, store = Design(PRIORS, n=7, sims_per_ic=2), FakeSimulator(), Store(tmp_path / "s")
    ds = store.create_dataset("fake", sim.spec(), list(PRIORS), sim.redshifts, sim.k())
    ds.append(sim.run([design.point(1), design.point(4)]))  # a previous run stored points 1 and 4
    sim.calls.clear()
    caplog.set_level(logging.INFO, logger="astrops")
    s = simulate_into_store(sim, design, store, progress=False)
    # IC groups {0,1} {2,3} {4,5} {6} minus what is stored
    assert sim.calls == [[0], [2, 3], [5], [6]]
    assert (s.planned, s.already_present, s.computed, s.failed, s.total_in_dataset) == (
        7,
        2,
        5,
        0,
        7,
    )
    assert set(ds.load().keys) == {
        record_key(p["params"], p["seed"]) for p in map(design.point, range(7))
    }
    assert "5 of 7 points" in caplog.text
    assert re.search(r"simulations: 1/5 done, [\d.]+ s/sim, ETA \d+:\d\d", caplog.text), (
        caplog.text
    )


def test_pool_keeps_a_bounded_number_of_groups_in_flight(tmp_path, monkeypatch):
    """workers=2: at most 2 * workers groups submitted and unfinished at any time; every point
    once."""
    in_flight, peak, lock = [0], [0], threading.Lock()

    class CountingPool(ThreadPoolExecutor):  # the scheduling of the process pool, in threads
        def __init__(self, workers, **_):
            super().__init__(workers)

        def submit(self, fn, *args):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            return super().submit(_counted, fn, *args)

    # finished before its future is: the runner can only see it done afterwards
    def _counted(fn, *args):
        try:
            return fn(*args)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(runner, "ProcessPoolExecutor", CountingPool)
    sim = FakeSimulator(delay=0.005)
    s = simulate_into_store(
        sim, Design(PRIORS, n=40), Store(tmp_path / "s"), workers=2, progress=False
    )
    assert s.computed == 40 and sorted(i for c in sim.calls for i in c) == list(range(40))
    assert 2 <= peak[0] <= 4


def test_a_billion_point_design_starts_at_once(tmp_path):
    """Nothing is listed up front: the first groups run and are stored at once, whatever n is."""
    sim, t0 = FakeSimulator(stop_after=3), time.perf_counter()
    with pytest.raises(Interrupted):
        simulate_into_store(sim, Design(PRIORS, n=10**9), Store(tmp_path / "s"), progress=False)
    assert time.perf_counter() - t0 < 5
    assert sim.calls == [[0], [1], [2], [3]] and len(only_dataset(tmp_path / "s").load()) == 3


def _vmrss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))


def test_billion_point_run_shows_an_eta_early_in_bounded_memory(tmp_path, small_sim_overrides):
    """simulation.n=10**9 on the small box: a progress line with an ETA within seconds, modest RSS,
    then killed."""
    overrides = [o for o in small_sim_overrides if o != "progress=false"]
    t0 = time.monotonic()
    proc = popen_entry(
        "simulate.py", *overrides, "progress=true", "simulation.n=1000000000", cwd=tmp_path
    )
    fd, err, peak_kb, eta_after = proc.stderr.fileno(), b"", 0, None
    try:
        while time.monotonic() - t0 < 60 and proc.poll() is None:
            if select.select([fd], [], [], 0.2)[0]:
                err += os.read(fd, 65536)
            peak_kb = max(peak_kb, _vmrss_kb(proc.pid))
            # tqdm: [elapsed<ETA, rate]
            if re.search(rb"\d+/1000000000 \[\d\d:\d\d<\d+:\d\d:\d\d, ", err):
                eta_after = time.monotonic() - t0
                break
    finally:
        proc.kill()
        proc.wait()
    assert eta_after is not None, (proc.returncode, err.decode()[-2000:])
    assert eta_after < 10, f"first ETA only after {eta_after:.1f} s"  # the issue: within 10 s
    assert peak_kb < 1_500_000, f"RSS {peak_kb / 1e6:.2f} GB"
    assert b"Traceback" not in err


def tree_state(root) -> dict:
    """Every path under root with its size and modification time: 'nothing changed' made
    checkable."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_dataset_directory_as_store_is_refused(tmp_path, small_sim_overrides):
    """paths.store_dir=<store>/<dataset> used to nest a second dataset inside the first and
    recompute."""
    ds = Store(tmp_path / "store").create_dataset(
        "ref", {"x": 1}, list(PRIORS), [8.0], np.geomspace(0.1, 1, 5)
    )
    before = tree_state(tmp_path / "store")
    proc = run_entry(
        "simulate.py",
        *small_sim_overrides,
        "simulation.n=2",
        f"paths.store_dir={ds.path}",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {ds.path} is a dataset directory, not a store: give the store that holds "
        f"it, {tmp_path / 'store'} (e.g. data/reference, not data/reference/<dataset>)"
    )
    assert tree_state(tmp_path / "store") == before
