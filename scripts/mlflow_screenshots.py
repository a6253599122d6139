"""Walk through MLflow's UI the way a new user does, in headless Chromium, over the seed's four
runs.

    .venv/bin/python scripts/mlflow_screenshots.py [--out docs/figures] [--quick]      (make
    screenshots)

Trains dense and cnn × regression and classification through ``astrops.training.train`` into a
temporary sqlite store, starts a real ``mlflow ui`` on a free 127.0.0.1 port, and with Playwright
drives Debian's ``chromium`` (``executable_path``; Playwright's own browser download is never
used):

1. opens the experiment by the URL the README gives,
   ``#/experiments/<id>?workflowType=machine_learning`` (MLflow 3.17 picks an experiment's view
   from the browser's workflow type, not from the experiment), → ``mlflow_runs.png``;
2. in a second fresh browser opens the plain ``#/experiments/<id>`` (GenAI overview), clicks
   **Model training** once, and opens the plain URL again (the browser now remembers);
3. ticks the four runs, presses **Compare**, reads the whole (virtualised) metrics grid
   → ``mlflow_compare.png``;
4. opens the classification run's Artifacts, figures/confusion_matrices.png →
   ``mlflow_confusion.png``.

:func:`tour` only records what it saw (:class:`Tour`); tests/test_mlflow_ui.py asserts on it.
``--quick`` trains one short epoch (the test's setting); the default trains the full configuration
so the screenshots in docs/figures show real numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_RUNS = [(m, t) for m in ("dense", "cnn") for t in ("regression", "classification")]
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "saliency=false"]
VIEWPORT = {"width": 1280, "height": 800}
RUNS_QUERY = "workflowType=machine_learning"  # MLflow 3.17: open an experiment on its runs
CONFUSION = "figures/confusion_matrices.png"
# Keep MLflow's assistant panel from opening itself over the page (it does on a browser's first
# visit).
NO_ASSISTANT = (
    "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
)


def chromium_path() -> str:
    """Debian's chromium (``scripts/sysdeps.sh`` installs it); a loud error, never a skip, without
    it."""
    path = shutil.which("chromium")
    if path is None:
        raise FileNotFoundError(
            "chromium is not on PATH: run `bash scripts/sysdeps.sh` (or `make install`), "
            "which installs Debian's chromium package"
        )
    return path


def compose_train_cfg(overrides: list[str]):
    """train.yaml composed as train.py would (the ``${hydra:...}`` resolvers work), like
    tests/conftest.py."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def store_uri(root: Path) -> str:
    return f"sqlite:///{root.absolute()}/mlflow.db"


def create_store(root: Path) -> str:
    """An empty store with the ``astrops`` experiment (the project's ``prepare_experiment``); its
    URI. Made before ``mlflow ui`` starts, so the server and the training never both create the
    schema."""
    from astrops.tracking.backend import prepare_experiment

    uri = store_uri(root)
    prepare_experiment(uri, "astrops", str(root / "artifacts"))
    return uri


def train_seed_runs(root: Path, quick: bool = True) -> None:
    """Train the seed's four runs through ``astrops.training.train`` into :func:`store_uri`
    (artifacts in ``root/artifacts``) with the report ``train.py`` adds; ``quick``: one epoch of
    two batches, no saliency."""
    from astrops.analysis.run_report import report_run
    from astrops.training import train

    os.environ.setdefault("ASTROPS_ROOT", str(ROOT))
    for model, task in SEED_RUNS:
        train(
            compose_train_cfg(
                [
                    f"paths.output_dir={root}/runs/{model}-{task}",
                    f"paths.log_dir={root}/logs",
                    f"logger.mlflow.tracking_uri={store_uri(root)}",
                    f"logger.mlflow.artifact_root={root}/artifacts",
                    "callbacks.progress_bar=null",
                    f"model={model}",
                    f"task={task}",
                    *(QUICK if quick else []),
                ]
            ),
            reporter=report_run,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowUI:
    """A real ``mlflow ui`` on a free 127.0.0.1 port: started on entering, :meth:`ready` waits
    until ``/health`` answers and gives the base URL, ended on exit whatever happened.

    One worker and no job runner (a faster start; nothing here uses MLflow's jobs). The server and
    its workers are a process group of their own, ended together.
    """

    def __init__(self, tracking_uri: str, log_path: Path, timeout: float = 120.0):
        self.tracking_uri, self.log_path, self.timeout = tracking_uri, log_path, timeout
        self.base = f"http://127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MlflowUI:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "ui",
                    "--backend-store-uri",
                    self.tracking_uri,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    self.base.rsplit(":", 1)[1],
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def ready(self) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow ui exited with {self.proc.returncode}:\n{self._log_tail()}"
                )
            try:
                if (
                    urllib.request.urlopen(self.base + "/health", timeout=2).read().strip()
                    == b"OK"
                ):  # noqa: S310
                    return self.base
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mlflow ui not ready after {self.timeout:.0f} s:\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class Tour:
    """What the browser saw (the test asserts on it)."""

    landing_url: str = ""  # where the README's URL ended up
    landing_runs: list[str] = field(default_factory=list)  # run names in the runs table there
    landing_text: str = ""  # the page's visible text there
    plain_url_before_toggle: str = ""  # the plain experiment URL in a fresh browser
    plain_url_after_toggle: str = ""  # ... after one click on "Model training"
    compare_url: str = ""
    # column order of the compare view
    compare_run_ids: list[str] = field(default_factory=list)
    # metric key -> cell per column
    compare_metrics: dict[str, list[str]] = field(default_factory=dict)
    artifact_url: str = ""
    # (get-artifact query, status)
    artifact_responses: list[tuple[str, int]] = field(default_factory=list)
    artifact_shown_sizes: list[tuple[int, int]] = field(default_factory=list)  # images on the page
    artifact_heading: bool = False  # the preview names figures/confusion_matrices.png
    screenshots: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step


def png_size(data: bytes) -> tuple[int, int]:
    """Width × height from a PNG's header; (0, 0) for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return (0, 0)
    return struct.unpack(">II", data[16:24])


def _run_links(page) -> list[str]:
    """Names of the runs linked from the page (links to .../runs/<32 hex>)."""
    return page.eval_on_selector_all(
        "a[href]",
        "as => as.filter(a => /\\/runs\\/[0-9a-f]{32}($|\\?)/.test(a.getAttribute('href')))"
        ".map(a => a.innerText.trim()).filter(t => t)",
    )


def _dismiss_popovers(page) -> None:
    """MLflow's first-visit popovers ("Got it") sit over the page and swallow clicks."""
    for _ in range(3):
        got_it = page.get_by_role("button", name="Got it")
        if not got_it.count():
            return
        with contextlib.suppress(Exception):
            got_it.first.click(timeout=2000)


# MLflow's compare view draws metrics as two virtualised grids, a key column and a value grid that
# scrolls both ways; the key column follows the value grid one scroll event late (it reads the
# grid's state before it updates), so both are scrolled here. Every rendered cell is collected by
# its absolute position.
_READ_METRICS_GRID = """
async () => {
  const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
  const keysGrid = grids.find(g => g.querySelector('a[title="Plot chart"]'));
  if (!keysGrid) return null;
  const valuesGrid = grids[grids.indexOf(keysGrid) + 1];
  const keys = {}, cells = {};
  const settle = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 30))));
  const stepY = Math.max(45, valuesGrid.clientHeight / 2), stepX = Math.max(100, valuesGrid.clientWidth / 2);
  for (let y = 0; ; y += stepY) {
    for (let x = 0; ; x += stepX) {
      valuesGrid.scrollTo(x, y);
      keysGrid.scrollTop = y;
      await settle();
      for (const c of keysGrid.querySelectorAll('[style*="top"]')) if (c.innerText.trim()) keys[c.style.top] = c.innerText.trim();
      for (const c of valuesGrid.querySelectorAll('[style*="top"]'))
        (cells[c.style.top] ??= {})[parseFloat(c.style.left)] = c.innerText.trim();
      if (x + valuesGrid.clientWidth >= valuesGrid.scrollWidth) break;
    }
    if (y + valuesGrid.clientHeight >= valuesGrid.scrollHeight) break;
  }
  const rows = {};
  for (const [top, key] of Object.entries(keys))
    rows[key] = Object.entries(cells[top] ?? {}).sort((a, b) => a[0] - b[0]).map(e => e[1]);
  return rows;
}
"""

# Bring the first row whose key starts with the prefix to the top of the grids.
_SHOW_METRIC_ROWS = """
async (prefix) => {
  const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
  const keysGrid = grids.find(g => g.querySelector('a[title="Plot chart"]'));
  const valuesGrid = grids[grids.indexOf(keysGrid) + 1];
  const settle = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 30))));
  valuesGrid.scrollTo(0, 0);
  for (let y = 0; y < valuesGrid.scrollHeight; y += 45) {
    const hit = [...keysGrid.querySelectorAll('[style*="top"]')].find(c => c.innerText.trim().startsWith(prefix));
    if (hit) { valuesGrid.scrollTo(0, parseFloat(hit.style.top)); keysGrid.scrollTop = parseFloat(hit.style.top); break; }
    valuesGrid.scrollTo(0, y);
    keysGrid.scrollTop = y;
    await settle();
  }
  await settle();
}
"""


def tour(
    base: str, experiment_id: str, out_dir: Path, classification_run: tuple[str, str]
) -> Tour:
    """Drive the UI; ``classification_run`` is (run id, run name) of the run whose artifacts to
    open."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    seen = Tour()
    experiment = f"{base}/#/experiments/{experiment_id}"

    clock = [time.monotonic()]

    def shot(page, name: str) -> None:
        path = out_dir / name
        page.screenshot(path=str(path))
        seen.screenshots.append(path)
        seen.seconds[name] = round(time.monotonic() - clock[0], 1)
        clock[0] = time.monotonic()

    def settle_on_a_tab(page) -> None:
        """The experiment page redirects to a tab (runs, overview, traces) once it knows its
        view."""
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_url(re.compile(r"/experiments/\d+/[a-z-]+"), timeout=20_000)

    def wait_for_run_links(page) -> None:
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_function(
                "() => [...document.querySelectorAll('a[href]')].some(a => "
                "/\\/runs\\/[0-9a-f]{32}/"
                ".test(a.getAttribute('href')))",
                timeout=15_000,
            )

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path())
        try:
            # 1. The README's URL in a fresh browser.
            ctx = browser.new_context(viewport=VIEWPORT)
            ctx.add_init_script(NO_ASSISTANT)
            page = ctx.new_page()
            page.goto(f"{experiment}?{RUNS_QUERY}")
            settle_on_a_tab(page)
            wait_for_run_links(page)
            seen.landing_url = page.url
            seen.landing_runs = _run_links(page)
            seen.landing_text = page.inner_text("body")
            shot(page, "mlflow_runs.png")
            ctx.close()

            # 2. The plain URL in another fresh browser, one click on "Model training", the plain
            # URL again.
            ctx = browser.new_context(viewport=VIEWPORT)
            ctx.add_init_script(NO_ASSISTANT)
            page = ctx.new_page()
            page.goto(experiment)
            settle_on_a_tab(page)
            seen.plain_url_before_toggle = page.url
            toggle = page.get_by_text("Model training", exact=True).first
            for attempt in range(4):
                try:
                    toggle.click(timeout=2_000)
                    break
                # a first-visit popover is in the way: dismiss it, as a user does
                except PlaywrightTimeout:
                    if attempt == 3:
                        raise
                    _dismiss_popovers(page)
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_url(re.compile(r"/runs"), timeout=10_000)
            page = ctx.new_page()
            page.goto(experiment)
            settle_on_a_tab(page)
            seen.plain_url_after_toggle = page.url
            seen.seconds["toggle"] = round(time.monotonic() - clock[0], 1)
            clock[0] = time.monotonic()

            # 3. Tick all runs, Compare, read every metric cell.
            wait_for_run_links(page)
            page.get_by_role("checkbox").first.click()  # the header box: every run
            page.get_by_role("button", name="Compare").click()
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_url(re.compile(r"/compare-runs"), timeout=15_000)
                page.locator('a[title="Plot chart"]').first.wait_for(timeout=20_000)
            seen.compare_url = page.url
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url.split("#", 1)[-1]).query)
            seen.compare_run_ids = json.loads(query.get("runs", ["[]"])[0])
            seen.compare_metrics = page.evaluate(_READ_METRICS_GRID) or {}
            if seen.compare_metrics:  # the picture: run names above, the test/R2 rows below
                for section in ("Visualizations", "Parameters"):
                    with contextlib.suppress(PlaywrightTimeout):
                        page.get_by_role("button", name=section, exact=True).first.click(
                            timeout=5_000
                        )
                page.evaluate(_SHOW_METRIC_ROWS, "test/R2")
                page.get_by_text("Run details", exact=True).first.evaluate(
                    "e => e.scrollIntoView({block: 'start'})"
                )
            shot(page, "mlflow_compare.png")

            # 4. The classification run's artifacts: figures/confusion_matrices.png.
            run_id, run_name = classification_run
            page.goto(experiment)
            settle_on_a_tab(page)
            wait_for_run_links(page)
            page.get_by_role("link", name=run_name, exact=True).first.click(timeout=15_000)
            page.get_by_role("tab", name="Artifacts").click(timeout=15_000)
            page.get_by_text("figures", exact=True).first.click(timeout=15_000)
            page.on(
                "response",
                lambda r: (
                    "get-artifact" in r.url
                    and seen.artifact_responses.append(
                        (urllib.parse.unquote(r.url.split("?", 1)[-1]), r.status)
                    )
                ),
            )
            page.get_by_text(Path(CONFUSION).name, exact=True).first.click(timeout=15_000)
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(
                    "() => [...document.images].some(i => i.complete && i.naturalWidth > 0"
                    " && i.src.startsWith('blob:'))",
                    timeout=15_000,
                )
            seen.artifact_url = page.url
            seen.artifact_shown_sizes = [
                tuple(s)
                for s in page.eval_on_selector_all(
                    "img",
                    "is => is.filter(i => i.complete).map(i => [i.naturalWidth, i.naturalHeight])",
                )
            ]
            seen.artifact_heading = page.get_by_text(CONFUSION, exact=True).count() > 0
            shot(page, "mlflow_confusion.png")
            ctx.close()
        finally:
            browser.close()
    return seen


def save_small(src: Path, dst: Path) -> None:
    """A screenshot as a 256-colour PNG (a UI has few colours: about 40 % of the size, no visible
    change)."""
    from PIL import Image

    with Image.open(src) as image:
        small = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    small.save(dst, optimize=True)


def seed_runs(tracking_uri: str) -> tuple[str, dict[str, object]]:
    """(experiment id, {run name: Run}) of the ``astrops`` experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("astrops")
    return exp.experiment_id, {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument(
        "--quick", action="store_true", help="one short epoch per run (the test's setting)"
    )
    args = parser.parse_args(argv)
    chromium_path()
    with tempfile.TemporaryDirectory(prefix="astrops-ui-") as tmp:
        tmp = Path(tmp)
        uri = create_store(tmp)
        with MlflowUI(uri, tmp / "mlflow-ui.log") as server:
            train_seed_runs(tmp, quick=args.quick)  # while the server starts
            experiment_id, runs = seed_runs(uri)
            cls = runs["dense-classification"]
            seen = tour(
                server.ready(), experiment_id, tmp / "shots", (cls.info.run_id, cls.info.run_name)
            )
        ok = (
            "/runs" in seen.landing_url
            and len(seen.landing_runs) >= 4
            and any(
                CONFUSION in query and status == 200 for query, status in seen.artifact_responses
            )
            and any(k.startswith("test/R2/") for k in seen.compare_metrics)
        )
        if not ok:
            print(
                f"mlflow_screenshots: the tour did not see what it should: {seen}", file=sys.stderr
            )
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        for path in seen.screenshots:
            save_small(path, args.out / path.name)
            print(args.out / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
