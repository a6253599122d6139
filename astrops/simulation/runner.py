"""Fill a store with a design's missing simulations, in parallel, resumably.

Nothing is recomputed: the points already in the store (successful or failed) are skipped, and
each finished group of simulations is written durably as soon as it arrives, so Ctrl-C, SIGKILL or
the end of a cluster allocation loses at most the simulations in flight.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from tqdm import tqdm

from astrops.simulation.coeval import CoevalSimulator, worker_init
from astrops.simulation.design import Design
from astrops.store import Store, record_key

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    dataset: str
    path: str
    planned: int
    already_present: int
    computed: int
    failed: int
    total_in_dataset: int
    wall_time: float

    def __str__(self) -> str:
        return (f"dataset {self.dataset}: {self.computed} simulated ({self.failed} failed), "
                f"{self.already_present} already present of {self.planned} in this shard; "
                f"{self.total_in_dataset} spectra in the dataset ({self.path}); {self.wall_time:.1f} s")


def _groups(points: list[dict]) -> list[list[dict]]:
    """Points sharing an IC seed go to one worker so the initial conditions are computed once."""
    by_seed: dict[int, list[dict]] = defaultdict(list)
    for p in points:
        by_seed[p["seed"]].append(p)
    return list(by_seed.values())


def simulate_into_store(simulator: CoevalSimulator, design: Design, store: Store, *, workers: int = 1,
                        shard: int = 0, num_shards: int = 1, name: str | None = None,
                        retry_failed: bool = False, progress: bool = True) -> RunSummary:
    """Simulate this shard's missing design points into ``store``; returns what was done.

    Every check (priors, shard, store writable, dataset compatible) happens before any simulation.
    """
    t0 = time.perf_counter()
    design.check_physical(simulator.box_len)
    if workers < 1:
        raise ValueError(f"simulation.workers={workers}: must be >= 1")
    indices = design.indices(shard, num_shards)
    store.check_writable()
    dataset = store.create_dataset(name or simulator.default_name(), simulator.spec(), list(design.priors),
                                   simulator.redshifts, simulator.k())
    present = dataset.keys(include_failed=not retry_failed)
    points = [design.point(i) for i in indices]
    todo = [p for p in points if record_key(p["params"], p["seed"]) not in present]
    log.info("dataset %s: %d of %d points in shard %d/%d to simulate", dataset.name, len(todo), len(points),
             shard, num_shards)
    groups = _groups(todo)
    computed = failed = 0
    bar = tqdm(total=len(todo), desc="simulations", unit="sim", disable=not progress, smoothing=0.05)

    def write(records: list[dict]) -> None:
        nonlocal computed, failed
        dataset.append(records)
        computed += len(records)
        failed += sum(r["status"] != "ok" for r in records)
        for r in records:
            if r["status"] != "ok":
                log.warning("simulation %d failed: %s", r["index"], r["error"])
        bar.update(len(records))

    try:
        if workers == 1 or len(groups) <= 1:
            for g in groups:
                write(simulator.run(g))
        else:
            ctx = mp.get_context("spawn")  # no inherited OpenMP/FFTW state from the parent
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_init,
                                     initargs=(simulator.n_threads,)) as pool:
                pending = {pool.submit(simulator.run, g) for g in groups[:workers * 2]}
                queue = groups[workers * 2:]
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        write(fut.result())
                        if queue:
                            pending.add(pool.submit(simulator.run, queue.pop(0)))
    finally:
        bar.close()
    if computed:
        dataset.compact()
    total = len(dataset)
    return RunSummary(dataset.name, str(dataset.path), len(points), len(points) - len(todo), computed, failed,
                      total, time.perf_counter() - t0)
