"""The store: atomic, de-duplicated, damage-tolerant, readable without astrops, seed-format round trip."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from astrops.store import Store, StoreError
from astrops.store.__main__ import main as store_cli
from astrops.store.seed_format import export_seed_format, import_seed_format

PARAMS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
K = np.geomspace(0.05, 2.0, 6)


def make_dataset(root, redshifts=(8.0,), name="toy"):
    return Store(root).create_dataset(name, {"toy": True, "z": list(redshifts)}, PARAMS, list(redshifts), K)


def rec(i, n_z=1, seed=None, status="ok"):
    rng = np.random.default_rng(i)
    return {"params": dict(zip(PARAMS, rng.random(3) * [195, 2, 15] + [5, 4, 5], strict=True)),
            "seed": i + 100 if seed is None else seed, "delta": rng.random((n_z, len(K))) * 50,
            "xH": rng.random(n_z), "Tb": rng.random(n_z), "status": status, "index": i}


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
    """The seed's own layout: a params CSV and numbered 21CMMC npz files (k, delta of shape (n_k,))."""
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
    assert store_cli(["provenance", str(tmp_path), "--command", "python simulate.py simulation.n=3"]) == 0
    text = (tmp_path / "PROVENANCE.md").read_text()
    assert ds.hash in text and "2 successful, 1 failed" in text and "simulation.n=3" in text
