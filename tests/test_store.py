"""The store: atomic, de-duplicated, damage-tolerant, readable without astrops, seed-format round
trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from astrops.entry.store import main as store_cli
from astrops.errors import StoreError
from astrops.store import Store
from astrops.store.seed_format import export_seed_format, import_seed_format

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
K = np.geomspace(0.05, 2.0, 6)


def make_dataset(root, redshifts=(8.0,), name="toy"):
    return Store(root).create_dataset(
        name, {"toy": True, "z": list(redshifts)}, PARAMS, list(redshifts), K
    )


def rec(i, n_z=1, seed=None, status="ok"):
    rng = np.random.default_rng(i)
    return {
        "params": dict(zip(PARAMS, rng.random(3) * [195, 2, 15] + [5, 4, 5], strict=True)),
        "seed": i + 100 if seed is None else seed,
        "delta": rng.random((n_z, len(K))) * 50,
        "xH": rng.random(n_z),
        "Tb": rng.random(n_z),
        "status": status,
        "index": i,
    }


def test_same_spec_same_dataset_other_spec_other_dataset(tmp_path):
    a, b = make_dataset(tmp_path), make_dataset(tmp_path)
    c = make_dataset(tmp_path, redshifts=(7.0, 8.0))
    assert a.path == b.path and a.path != c.path and a.hash != c.hash


def test_duplicates_are_removed_on_read_and_compaction(tmp_path):
    ds = make_dataset(tmp_path)
    ds.append([rec(0), rec(1)])
    ds.append([rec(1), rec(2)])  # a racing writer computed point 1 again
    assert len(ds.load()) == 3 and len(set(ds.load().keys)) == 3
    assert ds.compact() == 3
    files = ds.record_files()
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 3


def test_failed_records_are_kept_out_of_data_but_not_retried(tmp_path):
    ds = make_dataset(tmp_path)
    ds.append([rec(0), {**rec(1), "status": "failed", "error": "boom"}])
    assert len(ds.load()) == 1
    assert len(ds.keys()) == 2 and len(ds.keys(include_failed=False)) == 1
    ds.append([rec(1)])  # a retry that succeeded wins over the failure
    assert len(ds.load()) == 2


def test_arrays_have_documented_shapes_and_values(tmp_path):
    ds = make_dataset(tmp_path, redshifts=(7.0, 8.0, 9.0))
    rows = [rec(i, n_z=3) for i in range(4)]
    ds.append(rows)
    r = ds.load()
    assert r.delta.shape == (4, 3, len(K)) and r.xH.shape == (4, 3) and r.params.shape == (4, 3)
    by_seed = {s: i for i, s in enumerate(r.seeds)}
    for row in rows:
        i = by_seed[row["seed"]]
        np.testing.assert_array_equal(r.delta[i], row["delta"])
        np.testing.assert_array_equal(r.params[i], [row["params"][p] for p in PARAMS])


def test_readable_with_plain_pyarrow(tmp_path):
    ds = make_dataset(tmp_path)
    ds.append([rec(0)])
    t = pq.read_table(ds.record_files()[0])
    assert {"key", "seed", "delta", *PARAMS} <= set(t.column_names)
    assert len(t["delta"][0]) == len(K)


def test_corrupt_and_half_written_files(tmp_path):
    ds = make_dataset(tmp_path)
    ds.append([rec(0)])
    ds.append([rec(1)])
    good, victim = ds.record_files()
    victim.write_bytes(victim.read_bytes()[:40])  # truncated shard
    (victim.parent / ".tmp-abc-part.parquet").write_bytes(b"PAR1 half")  # an interrupted write
    problems = ds.verify()
    assert any("unreadable" in p and victim.name in p for p in problems)
    assert any("temporary" in p for p in problems)
    with pytest.warns(UserWarning, match="skipping unreadable"):
        r = ds.load()
    assert len(r) == 1  # the intact record survives
    assert store_cli(["verify", str(tmp_path)]) == 1


def test_store_path_blocked_by_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="not writable.*paths.store_dir"):
        Store(tmp_path / "afile" / "store").check_writable()


def test_seed_format_round_trip(tmp_path):
    src = make_dataset(tmp_path / "a", redshifts=(7.0, 8.0))
    src.append([rec(i, n_z=2) for i in range(5)])
    export_seed_format(src, tmp_path / "export")
    dst = make_dataset(tmp_path / "b", redshifts=(7.0, 8.0))
    assert import_seed_format(dst, tmp_path / "export" / "params.csv") == 5
    a, b = src.load(), dst.load()
    order_a, order_b = np.argsort(a.seeds), np.argsort(b.seeds)
    np.testing.assert_array_equal(a.delta[order_a], b.delta[order_b])
    np.testing.assert_array_equal(a.params[order_a], b.params[order_b])
    np.testing.assert_array_equal(a.seeds[order_a], b.seeds[order_b])


def test_import_seed_study_files_without_seed(tmp_path):
    """The seed's own layout: a params CSV and numbered 21CMMC npz files (k, delta of shape
    (n_k,))."""
    raw = tmp_path / "seed"
    raw.mkdir()
    rows = [rec(i) for i in range(3)]
    with open(raw / "params.csv", "w") as fh:
        fh.write(",".join(PARAMS) + "\n")
        for i, r in enumerate(rows):
            fh.write(",".join(repr(r["params"][p]) for p in PARAMS) + "\n")
            np.savez(raw / f"power_{i}.npz", k=K, delta=r["delta"][0])
    ds = make_dataset(tmp_path / "s")
    assert import_seed_format(ds, raw / "params.csv") == 3
    r = ds.load()
    assert (r.seeds == -1).all(), "imported records have no known IC seed"
    assert sorted(r.delta[:, 0, 0]) == sorted(x["delta"][0, 0] for x in rows)


def test_import_with_wrong_k_grid_changes_nothing(tmp_path):
    src = make_dataset(tmp_path / "a")
    src.append([rec(0)])
    export_seed_format(src, tmp_path / "e")
    other = Store(tmp_path / "b").create_dataset("o", {"o": 1}, PARAMS, [8.0], K * 1.01)
    with pytest.raises(StoreError, match="k grid differs"):
        import_seed_format(other, tmp_path / "e" / "params.csv")
    assert other.record_files() == []


def test_priors_come_from_the_design_records_else_from_the_values(tmp_path):
    ds = make_dataset(tmp_path)
    # R_BUBBLE_MAX declared by no design
    narrow = {"HII_EFF_FACTOR": [10.0, 100.0], "ION_Tvir_MIN": [4.0, 6.0]}
    ds.append(
        [
            {**rec(0), "design": {"priors": narrow}},
            {**rec(1), "design": {"priors": {"HII_EFF_FACTOR": [5, 150]}}},
            rec(2),
        ]
    )  # rec(2): no design at all (an imported spectrum)
    r = ds.load()
    r_bubble = r.params[:, 2]
    # the union of designs
    assert r.priors(PARAMS) == {
        "HII_EFF_FACTOR": [5.0, 150.0],
        "ION_Tvir_MIN": [4.0, 6.0],
        # the fallback: the values' span
        "R_BUBBLE_MAX": [r_bubble.min(), r_bubble.max()],
    }
    assert r_bubble.min() < r_bubble.max()


def test_bundled_datasets_record_the_reference_priors():
    """The class edges once written in conf/data/reference.yaml are the priors the bundled data
    record."""
    from conftest import ROOT

    reference = {
        "HII_EFF_FACTOR": [5.0, 200.0],
        "ION_Tvir_MIN": [4.0, 6.0],
        "R_BUBBLE_MAX": [5.0, 20.0],
    }
    for store, name in (("reference", "reference"), ("holdout", "holdout")):
        ds = Store(ROOT / "data" / store).dataset(name)
        assert ds.load().priors(ds.parameters) == reference


def test_import_with_a_config_records_its_priors(tmp_path, capsys):
    """Spectra imported under a simulation config carry its priors: training's class edges need no
    other source."""
    from conftest import ROOT

    k = Store(ROOT / "data" / "reference").dataset("reference").k  # the reference config's k grid
    raw = tmp_path / "raw"
    raw.mkdir()
    np.savez(raw / "0.npz", k=k, delta=np.ones(len(k)))
    (raw / "params.csv").write_text(
        "file,HII_EFF_FACTOR,ION_Tvir_MIN,R_BUBBLE_MAX\n0.npz,50.0,5.0,10.0\n"
    )
    assert (
        store_cli(
            [
                "import",
                str(tmp_path / "store"),
                "simulation.redshifts=[8.0]",
                "simulation.design.priors.R_BUBBLE_MAX=[5.0,15.0]",
                "--csv",
                str(raw / "params.csv"),
            ]
        )
        == 0
    )
    assert "imported 1 spectra" in capsys.readouterr().out
    (ds,) = Store(tmp_path / "store").datasets()
    assert ds.load().priors(ds.parameters) == {
        "HII_EFF_FACTOR": [5.0, 200.0],
        "ION_Tvir_MIN": [4.0, 6.0],
        "R_BUBBLE_MAX": [5.0, 15.0],
    }


def test_the_store_imports_no_torch_hydra_or_21cmfast_and_runs_as_a_module(tmp_path):
    """The store is a data layer: ``python -m astrops store`` launches the entry layer's CLI, the
    package stays bare."""
    probe = (
        "import sys, astrops.store; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'hydra', 'omegaconf', 'lightning', 'py21cmfast', 'py21cmmc'}), "
        "[m for m in sys.modules if m.startswith(('astrops.entry', 'astrops.simulation'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] []"
    make_dataset(tmp_path).append([rec(0), rec(1)])
    p = subprocess.run(
        [sys.executable, "-m", "astrops", "store", "info", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert (
        p.returncode == 0
        and p.stdout.startswith("toy-")
        and "(2 spectra, 0 failed, 1 files)" in p.stdout
    )
    p = subprocess.run(
        [sys.executable, "-m", "astrops", "store", "verify", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.strip().endswith(
        "is not a directory: give the store directory (e.g. data/store)"
    )


def test_cli_info_and_unknown_dataset(tmp_path, capsys):
    ds = make_dataset(tmp_path)
    ds.append([rec(0), rec(1)])
    assert store_cli(["info", str(tmp_path)]) == 0
    assert "2 spectra" in capsys.readouterr().out
    assert store_cli(["info", str(tmp_path), "--dataset", "nope"]) == 2
    assert "no dataset matches 'nope'" in capsys.readouterr().err


def test_cli_provenance(tmp_path):
    ds = make_dataset(tmp_path)
    ds.append([rec(0), rec(1), {**rec(2), "status": "failed", "error": "x"}])
    assert (
        store_cli(["provenance", str(tmp_path), "--command", "python simulate.py simulation.n=3"])
        == 0
    )
    text = (tmp_path / "PROVENANCE.md").read_text()
    assert ds.hash in text and "2 successful, 1 failed" in text and "simulation.n=3" in text


def tree_state(root) -> dict:
    """Every path under root with its size and modification time: 'nothing changed' made
    checkable."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def damage_all_record_files(ds):
    for f in ds.record_files():
        f.write_bytes(f.read_bytes()[:40])


def test_dataset_directory_is_not_a_store(tmp_path):
    ds = make_dataset(tmp_path / "store")
    for wrong in (ds.path, ds.path / "records"):
        with pytest.raises(
            StoreError,
            match=rf"is a .* not a store: give the store that holds it, {tmp_path}/store ",
        ):
            Store(wrong)
    assert Store(tmp_path / "store").dataset().path == ds.path
    from astrops.data import SpectraDataModule  # training opens its store the same way

    with pytest.raises(StoreError, match="is a dataset directory, not a store"):
        SpectraDataModule(str(ds.path)).prepare()


def test_damaged_dataset_is_not_reported_as_empty(tmp_path):
    """All record files unreadable, or dataset.json damaged: one StoreError line naming verify, not
    'run simulate.py'."""
    # the training path: it must not say "run simulate.py first"
    from astrops.data import SpectraDataModule

    ds = make_dataset(tmp_path / "s")
    ds.append([rec(0)])
    ds.append([rec(1)])
    damage_all_record_files(ds)
    with pytest.raises(
        StoreError,
        match=rf"dataset {ds.name} is damaged: none of its spectra can be read \(2 unreadable "
        rf"record file\(s\).*python -m astrops store verify {tmp_path}/s",
    ):
        SpectraDataModule(str(tmp_path / "s")).prepare()
    # an empty dataset stays empty, not damaged
    assert len(make_dataset(tmp_path / "e").load()) == 0
    for text in ('{"name": "toy", "ha', "\x00\xff garbage", "[]", '{"name": "toy"}'):
        (ds.path / "dataset.json").write_text(text)
        with pytest.raises(
            StoreError, match=r"dataset.json is damaged \(.*\): restore it.*astrops.store verify"
        ):
            Store(tmp_path / "s").dataset()


@pytest.mark.parametrize(
    "row,msg",
    [
        (
            "{f},5.0,,10.0",
            r"row 1 \(line 3\): column ION_Tvir_MIN is blank: fill in a value or delete the row",
        ),
        (
            "{f},5.0,abc,10.0",
            r"row 1 \(line 3\): column ION_Tvir_MIN='abc' is not a finite number",
        ),
        ("{f},5.0,nan,10.0", r"column ION_Tvir_MIN='nan' is not a finite number"),
        ("{f},5.0,4.5", r"row 1 \(line 3\): column R_BUBBLE_MAX is blank"),
        ("{f},5.0,4.5,10.0,7", r"row 1 \(line 3\) has more cells than the header"),
        (",5.0,4.5,10.0", r"row 1 \(line 3\): column file is blank"),
    ],
)
def test_bad_csv_cells_are_named_and_nothing_is_imported(tmp_path, row, msg):
    csv_path = write_seed_csv(tmp_path, [None, row])
    ds = make_dataset(tmp_path / "s")
    with pytest.raises(StoreError, match=msg):
        import_seed_format(ds, csv_path)
    assert ds.record_files() == []


def write_seed_csv(tmp_path, rows):
    """params.csv with a file column; None is a good row, a string is a row template ({f}: its
    npz)."""
    lines = ["file," + ",".join(PARAMS)]
    for i, row in enumerate(rows):
        np.savez(tmp_path / f"p{i}.npz", k=K, delta=rec(i)["delta"][0])
        lines.append(f"p{i}.npz,50.0,5.0,10.0" if row is None else row.format(f=f"p{i}.npz"))
    (tmp_path / "params.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "params.csv"


def test_cli_store_without_datasets(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert store_cli(["info", str(tmp_path / "empty")]) == 0
    assert "no datasets" in capsys.readouterr().out
    for cmd in ("verify", "compact", "provenance"):  # nothing verified is not a pass
        assert store_cli([cmd, str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: {tmp_path}/empty holds no datasets (no */dataset.json): give the store "
            "directory "
            "that holds them, e.g. data/reference"
        ]
    assert list((tmp_path / "empty").iterdir()) == []


def test_cli_verify_names_a_damaged_dataset_json_and_goes_on(tmp_path, capsys):
    good, bad = (
        make_dataset(tmp_path, name="a"),
        make_dataset(tmp_path, redshifts=(7.0,), name="b"),
    )
    good.append([rec(0)])
    (bad.path / "dataset.json").write_text('{"trunc')
    assert store_cli(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{good.name}: ok" in out
        and f"{bad.name}: 1 problem(s)" in out
        and "dataset.json is damaged" in out
    )


def test_cli_processes_fail_in_one_line_and_change_nothing(tmp_path):
    """Real `python -m astrops store` processes: broken pipe, dataset dir as store, blank CSV cell,
    damaged json."""
    store = tmp_path / "store"
    # ~1 MB of --json
    ds = Store(store).create_dataset("big", {"filler": list(range(100_000))}, PARAMS, [8.0], K)
    ds.append([rec(0)])
    cli = f"{sys.executable} -m astrops store"
    before = tree_state(store)

    def run(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )

    # stdout closed early: quiet, status 141 like cat/grep under SIGPIPE
    p = run(
        f"{cli} info {store} --json | head -1; echo rc=${{PIPESTATUS[0]}}; {cli} info {store} | "
        "true; "
        "echo rc=${PIPESTATUS[0]}"
    )
    assert p.stdout.splitlines() == [
        f"{ds.name}  (1 spectra, 0 failed, 1 files)",
        "rc=141",
        "rc=141",
    ], p.stdout
    assert p.stderr == ""
    write_seed_csv(tmp_path, [None, "{f},5.0,,10.0"])
    (tmp_path / "other" / "b").mkdir(parents=True)
    (tmp_path / "other" / "b" / "dataset.json").write_text("{")
    cases = [
        (
            f"{cli} verify {ds.path}",
            f"{ds.path} is a dataset directory, not a store: "
            f"give the store that holds it, {store}",
        ),
        (
            f"{cli} info {ds.path}/records",
            f"{ds.path}/records is a dataset's records folder, not a store",
        ),
        (
            f"{cli} import {store} --csv {tmp_path}/params.csv",
            f"{tmp_path}/params.csv row 1 (line 3): column ION_Tvir_MIN is blank: fill in a value "
            "or delete the row",
        ),
        (
            f"{cli} info {tmp_path}/other",
            f"{tmp_path}/other/b/dataset.json is damaged (unreadable: ",
        ),
    ]
    for cmd, needle in cases:
        p = run(cmd)
        assert p.returncode == 2 and needle in p.stderr, (cmd, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert tree_state(store) == before
