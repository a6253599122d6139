"""The one entry policy (astrops.entry.policy): rules first, bad input = one line + exit 2,
multirun jobs."""

from __future__ import annotations

import math

import pytest
from conftest import ROOT, run_entry
from hydra.errors import InstantiationException
from omegaconf import OmegaConf, open_dict

from astrops.entry.policy import entry_point
from astrops.entry.rules import TRAIN_RULES


class Refused(ValueError):
    """Stands for an entry's bad-input error type."""


def _hydra(mode: str):
    """Hydra's job state as a run or a multirun job (what the policy reads)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = mode
        HydraConfig.instance().set_config(cfg)
        del cfg["hydra"]
    return cfg


def _command(error: BaseException | None, objective: bool = True):
    @entry_point(TRAIN_RULES, (Refused,), objective=objective)
    def command(cfg):
        if error is not None:
            raise error
        return 0.5

    return command


def test_bad_input_is_one_line_and_exit_2(capsys):
    cfg = _hydra("RUN")
    with pytest.raises(SystemExit) as exc:
        _command(Refused("data.x=1: wrong; use data.x=2"))(cfg)
    assert (
        exc.value.code == 2 and capsys.readouterr().err == "error: data.x=1: wrong; use data.x=2\n"
    )
    bad = OmegaConf.merge(cfg, {"seed": "abc"})
    with pytest.raises(SystemExit) as exc:  # the rule table, before fn runs
        _command(None)(bad)
    assert exc.value.code == 2 and "seed='abc'" in capsys.readouterr().err


def test_instantiate_errors_count_by_their_cause(capsys):
    cfg = _hydra("RUN")
    wrapped = InstantiationException("Error in call to target")
    wrapped.__cause__ = Refused("batch_size=0: must be positive")
    with pytest.raises(SystemExit):
        _command(wrapped)(cfg)
    assert "batch_size=0" in capsys.readouterr().err
    bug = InstantiationException("Error in call to target")
    bug.__cause__ = KeyError("a bug")
    with pytest.raises(InstantiationException):  # not bad input: the traceback is kept
        _command(bug)(cfg)


def test_a_sweep_goes_on_past_a_failing_job_only_for_objectives():
    cfg = _hydra("MULTIRUN")
    assert math.isnan(_command(Refused("bad"))(cfg))  # NaN to the sweeper, which goes on
    assert math.isnan(_command(RuntimeError("crash"))(cfg))
    with pytest.raises(SystemExit) as exc:  # simulate/predict shards must not report success
        _command(Refused("bad"), objective=False)(cfg)
    assert exc.value.code == 2
    with pytest.raises(RuntimeError):
        _command(RuntimeError("crash"), objective=False)(cfg)
    assert _command(None)(_hydra("RUN")) == 0.5


def test_a_bad_simulation_shard_in_a_multirun_exits_2(tmp_path):
    proc = run_entry(
        "simulate.py",
        "-m",
        "simulation.n=-1",
        f"paths.store_dir={tmp_path}/store",
        f"hydra.sweep.dir={tmp_path}/sweep",
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "simulation.n" in proc.stderr and not (tmp_path / "store").exists()
