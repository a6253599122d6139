"""README.md stays true: its commands compose, its cheap commands run, its Python snippets work.

* Every ``train.py`` / ``simulate.py`` / ``predict.py`` / ``baselines.py`` command in the README
  (```bash blocks and inline code) is composed with Hydra's compose API, not run, so a stale
  override key or an unknown config-group option fails here. Multirun sweeps are expanded into
  jobs: a sweep over a config group (``model=dense,cnn``) contributes every option, a sweep over a
  value (``seed=1,2,3``, ``simulation.shard=range(0,64)``) its first value only (the others compose
  the same way). Placeholders are values, never keys: ``<run>``, ``…`` and shell variables
  (``$ckpt``) are replaced by the string ``placeholder`` and the override's key is still checked.
* The cheap commands run as real subprocesses: ``--help`` of every entry point and CLI module the
  README names, ``python -m astrops store info data/reference``, a one-epoch ``train.py`` whose
  last output line is the checkpoint, and the README's ``predict.py`` line on the shipped example
  spectra.
* The ```python blocks are executed from the repository root with ``ckpt`` bound to that
  checkpoint.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_entry

README = ROOT / "README.md"
SCRIPTS = ("train.py", "simulate.py", "predict.py", "baselines.py")
PARAMETERS = ["HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX"]
EXAMPLE = "data/examples/spectra_z8.npz"
FAST_TRAIN = [
    "trainer.max_epochs=1",
    "logger=none",
    "callbacks.progress_bar=null",
    "saliency=false",
]

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL_OPS = {"|", "||", "&", "&&", ";", "(", ")", "$(", "<", ">", ">>"}


def readme_blocks(lang: str) -> list[str]:
    return [body for tag, body in FENCE.findall(README.read_text()) if tag == lang]


def readme_commands() -> list[str]:
    """Shell command lines: the lines of ```bash blocks (continuations joined) and inline code
    spans."""
    text = README.read_text()
    lines = []
    for block in readme_blocks("bash"):
        lines += [ln for ln in block.replace("\\\n", " ").splitlines() if ln.strip()]
    prose = FENCE.sub("", text)
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return lines


def unplaceholder(line: str) -> str:
    """``<run>``, ``…`` and ``$var`` (not ``$(``) become the value ``placeholder``; keys stay as
    written."""
    line = re.sub(r"<[\w -]+>", "placeholder", line)
    line = line.replace("…", "placeholder")
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", "placeholder", line)


def entry_invocations(line: str) -> list[tuple[str, bool, list[str]]]:
    """(config name, multirun, overrides) for every entry-point script run on a shell line."""
    lex = shlex.shlex(unplaceholder(line), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    found = []
    for i, tok in enumerate(tokens):
        if not tok.endswith(SCRIPTS) or (
            i
            and not re.search(r"(^|/)python[\d.]*$", tokens[i - 1])
            and tokens[i - 1] not in SHELL_OPS
        ):
            # only a script being run (first word, or after python), not e.g. "a.py" in prose
            continue
        args = list(itertools.takewhile(lambda t: t not in SHELL_OPS, tokens[i + 1 :]))
        multirun = bool({"-m", "--multirun"} & set(args))
        flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun", "--help")]
        assert not flags, f"README line {line!r}: unknown flags {flags} for {tok}"
        if "--help" in args:
            args = []
        found.append((Path(tok).stem, multirun, [a for a in args if not a.startswith("-")]))
    return found


def sweep_jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the jobs a (multi)run would launch (see the module docstring)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not multirun:
        return [overrides]
    choices = []
    for ov in OverridesParser.create().parse_overrides(overrides):
        if not ov.is_sweep_override():
            choices.append([ov.input_line])
            continue
        values = list(ov.sweep_string_iterator())  # raises for interval sweeps: none in the README
        if not (ROOT / "conf" / ov.key_or_group).is_dir():
            values = values[:1]
        choices.append([f"{ov.get_key_element()}={v}" for v in values])
    return [list(job) for job in itertools.product(*choices)]


def compose_all(config_name: str, jobs: list[list[str]]) -> None:
    """Compose (and resolve) each job's config as the entry point would; raises on a stale
    override."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            for job in jobs:
                try:
                    cfg = compose(config_name, overrides=job, return_hydra_config=True)
                    HydraConfig.instance().set_config(cfg)
                    with open_dict(cfg):
                        del cfg["hydra"]
                    # interpolations, ${hydra:...} included
                    OmegaConf.to_container(cfg, resolve=True)
                except Exception as exc:
                    raise AssertionError(
                        f"README's `{config_name}.py {' '.join(job)}` does not compose: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
    finally:
        GlobalHydra.instance().clear()


def readme_invocations() -> dict[str, list[list[str]]]:
    jobs: dict[str, list[list[str]]] = {}
    for line in readme_commands():
        for name, multirun, overrides in entry_invocations(line):
            for job in sweep_jobs(overrides, multirun):
                if job not in jobs.setdefault(name, []):
                    jobs[name].append(job)
    return jobs


def test_readme_commands_compose():
    jobs = readme_invocations()
    # the parser sees what the README runs: a sweep over groups, Slurm, the placeholder-carrying
    # lines
    assert ["model=cnn", "task=classification"] in jobs["train"]
    assert any("hydra/launcher=slurm" in j for j in jobs["simulate"])
    assert any("ckpt_path=placeholder" in j for j in jobs["predict"])
    assert sum(len(j) for j in jobs.values()) > 20
    # conf/hydra/launcher/{slurm,local}.yaml extend submitit_slurm/submitit_local, which
    # hydra-submitit-launcher (a pinned dependency in pyproject.toml, like the joblib launcher and
    # Optuna sweeper) provides: composing `hydra/launcher=slurm` needs the plugin but no cluster,
    # so those lines are composed like any other
    for name, name_jobs in jobs.items():
        compose_all(name, name_jobs)


@pytest.mark.parametrize(
    "line",
    [
        "python train.py model=mlp",  # an unknown group option
        "python train.py trainer.max_epoch=1",  # a stale key
        ".venv/bin/python train.py -m seed=1,2 datta.kfold=5",  # a stale key in a sweep
        "python simulate.py -m simulation.nn=10 'simulation.shard=range(0,4)'",
        "python predict.py ckpt_path=<run> inputs=x.npz",  # placeholders do not hide the key
    ],
)
def test_stale_readme_line_fails(line):
    ((name, multirun, overrides),) = entry_invocations(line)
    with pytest.raises(
        AssertionError, match=r"does not compose: .*(?i:override|could not find|key)"
    ):
        compose_all(name, sweep_jobs(overrides, multirun))


def test_help_and_store_info_run():
    """The cheap README commands, as subprocesses started together (each ~1 s)."""
    text = README.read_text()
    cmds = {script: [sys.executable, str(ROOT / script), "--help"] for script in SCRIPTS}
    mentioned = set(re.findall(r"-m astrops ([a-z][\w-]*)", text))
    assert {"store", "compare", "plots", "learning-curve", "score", "diagnostics"} <= mentioned
    for command in sorted(mentioned):
        cmds[command] = [sys.executable, "-m", "astrops", command, "--help"]
    cmds["astrops"] = [sys.executable, "-m", "astrops", "--help"]
    cmds["info"] = [sys.executable, "-m", "astrops", "store", "info", "data/reference"]
    # `import astrops` stays cheap: load_model is exported lazily, torch/Lightning/MLflow load on
    # first use
    cmds["import"] = [
        sys.executable,
        "-c",
        "import sys, astrops; print(sorted(m for m in sys.modules if m.split('.')[0] "
        "in ('torch', 'lightning', 'mlflow', 'hydra')), 'load_model' in dir(astrops), "
        "astrops.__all__)",
    ]
    assert any("astrops store info data/reference" in ln for ln in readme_commands())
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    procs = {
        n: subprocess.Popen(
            c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n, c in cmds.items()
    }
    outs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (
            f"{' '.join(cmds[name])} failed:\n{out[-2000:]}\n{err[-2000:]}"
        )
        outs[name] = out
    for name, out in outs.items():
        if name.endswith(".py"):
            assert "powered by hydra" in out.lower() and "Configuration groups" in out, out[-500:]
        elif name == "import":
            assert out.startswith("[] True") and "load_model" in out, out
        elif name == "info":
            assert "2000 spectra" in out and "reference-" in out, out
        elif name == "astrops":  # the command list names every command the README uses
            assert all(f"python -m astrops {c}" in out for c in mentioned), out
        else:
            assert "usage:" in out, out
    # `python -m astrops store info|verify|... PATH`: every subcommand the README lists exists
    subcommands = set(re.search(r"\{([\w,]+)\}", outs["store"]).group(1).split(","))
    for listed in re.findall(r"astrops store ((?:\w+\|)+\w+)", text):
        assert set(listed.split("|")) <= subcommands, (listed, subcommands)


def test_readme_links_and_make_targets():
    text = README.read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", text):  # relative links (no URLs)
        assert (ROOT / link).exists(), f"README links to missing {link}"
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    used = set(re.findall(r"\bmake (\w[\w-]*)", text))
    assert used and used <= targets, (
        f"README names make targets the Makefile lacks: {used - targets}"
    )
    for path in re.findall(
        r"`((?:conf|data|docs|scripts)/[\w./-]+\.(?:yaml|md|npz|csv|py))`", text
    ):
        assert (ROOT / path).exists(), f"README names missing file {path}"


def test_examples_regenerate_exactly():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_examples", ROOT / "scripts" / "make_examples.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "data/examples/ is stale: run scripts/make_examples.py"
    with np.load(ROOT / EXAMPLE, allow_pickle=False) as z:
        assert (
            sorted(z.files) == ["delta", "k"]
            and z["k"].shape == (22,)
            and z["delta"].shape == (10, 22)
        )
    truth = pd.read_csv(ROOT / "data" / "examples" / "spectra_z8_truth.csv")
    assert list(truth.columns) == [*PARAMETERS, "key"] and len(truth) == 10


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """README: ``ckpt=$(.venv/bin/python train.py | tail -1)``, with one epoch and no MLflow."""
    assert any(
        re.search(r"ckpt=\$\(\S*python train\.py \| tail -1\)", ln) for ln in readme_commands()
    )
    tmp = tmp_path_factory.mktemp("readme")
    proc = run_entry("train.py", *FAST_TRAIN, f"hydra.run.dir={tmp / 'train'}", cwd=ROOT)
    ckpt = proc.stdout.strip().splitlines()[-1]
    assert Path(ckpt).is_file(), proc.stdout[-2000:]
    return ckpt


def test_readme_predict_line_and_python_api(checkpoint, tmp_path, monkeypatch, capsys):
    """README's predict.py line on the example (a subprocess) and its ```python blocks (in this
    process, meanwhile: both spend their time importing torch, so they overlap)."""
    lines = [ln for ln in readme_commands() if "predict.py" in ln and f"input={EXAMPLE}" in ln]
    assert lines, f"README has no predict.py line on {EXAMPLE}"
    ((_, _, overrides),) = entry_invocations(lines[0].replace("$ckpt", checkpoint))
    out = tmp_path / "predictions.csv"
    overrides = [f"output={out}" if o.startswith("output=") else o for o in overrides]
    predict = subprocess.Popen(
        [sys.executable, str(ROOT / "predict.py"), *overrides, f"hydra.run.dir={tmp_path / 'p'}"],
        cwd=ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        blocks = readme_blocks("python")
        assert blocks, "README has no ```python block"
        monkeypatch.chdir(ROOT)
        for code in blocks:
            ns: dict = {"ckpt": checkpoint, "__name__": "__readme__"}
            exec(compile(code, "README.md", "exec"), ns)
            frames = [
                v
                for v in ns.values()
                if isinstance(v, pd.DataFrame) and set(PARAMETERS) <= set(v.columns)
            ]
            assert frames and all(len(f) == 10 for f in frames), code
        assert "HII_EFF_FACTOR" in capsys.readouterr().out
    finally:
        stdout, stderr = predict.communicate(timeout=120)
    assert predict.returncode == 0, f"{lines[0]} failed:\n{stdout[-2000:]}\n{stderr[-2000:]}"
    assert stdout.strip().splitlines()[-1] == str(out)
    # a plain CSV: header + one row per spectrum (metadata in the .json sidecar)
    df = pd.read_csv(out)
    assert len(df) == 10 and set(PARAMETERS) <= set(df.columns), df.head()
    assert {"out_of_distribution", "ood_reason"} <= set(df.columns)
    assert np.isfinite(df[PARAMETERS].to_numpy()).all()
