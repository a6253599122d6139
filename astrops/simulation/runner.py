"""Fill a store with a design's missing simulations, in parallel, resumably.

Nothing is recomputed: the points already in the store (successful or failed) are skipped, and
each finished group of simulations is written durably as soon as it arrives, so Ctrl-C, SIGKILL or
the end of a cluster allocation loses at most the simulations in flight.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import chain, groupby, islice

from tqdm import tqdm

from astrops.simulation.coeval import CoevalSimulator, worker_init
from astrops.simulation.design import Design, ShardIndices
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
        return (
            f"dataset {self.dataset}: {self.computed} simulated ({self.failed} failed), "
            f"{self.already_present} already present of {self.planned} in this shard; "
            f"{self.total_in_dataset} spectra in the dataset ({self.path}); {self.wall_time:.1f} s"
        )


def _groups(points: Iterable[dict]) -> Iterator[list[dict]]:
    """Consecutive points sharing an IC seed go to one worker so the initial conditions are
    computed once.

    A design lists the points of an IC group consecutively, so grouping runs of equal seeds gives
    the same groups as collecting by seed, without holding the design in memory.
    """
    for _seed, run in groupby(points, key=lambda p: p["seed"]):
        yield list(run)


def _count_present(
    design: Design,
    indices: ShardIndices,
    keys: list[str],
    record_indices: list[int],
    present: set[str],
) -> int:
    """How many of this shard's points the store already holds, from the stored records alone.

    Costs one design point per stored record instead of one per planned point, so a huge n does not
    delay the first simulation while the progress bar still gets an exact total.
    """
    ours = {
        i for i, key in zip(record_indices, keys, strict=True) if i in indices and key in present
    }
    return sum(
        record_key(p["params"], p["seed"]) in present for p in map(design.point, sorted(ours))
    )


class _Progress:
    """A progress bar on stderr, or (progress=false) log lines, both with an ETA from the first
    result on."""

    LOG_EVERY = 60.0  # seconds between log lines without a bar

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0
        self.t0 = self.last_log = time.perf_counter()
        # miniters=1 turns off tqdm's adaptive skipping, so the first finished group (>= 0.5 s
        # after the start) redraws the bar with a rate and an ETA; a 10**9-point design shows one
        # within seconds
        self.bar = tqdm(
            total=total,
            desc="simulations",
            unit="sim",
            disable=not enabled,
            smoothing=0.05,
            mininterval=0.5,
            miniters=1,
        )

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        now = time.perf_counter()
        if not self.enabled and (
            self.done == n or now - self.last_log >= self.LOG_EVERY or self.done == self.total
        ):
            self.last_log = now
            per_sim = (now - self.t0) / self.done
            log.info(
                "simulations: %d/%d done, %.2f s/sim, ETA %s",
                self.done,
                self.total,
                per_sim,
                tqdm.format_interval(per_sim * (self.total - self.done)),
            )

    def close(self) -> None:
        self.bar.close()


def simulate_into_store(
    simulator: CoevalSimulator,
    design: Design,
    store: Store,
    *,
    workers: int = 1,
    shard: int = 0,
    num_shards: int = 1,
    name: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Simulate this shard's missing design points into ``store``; returns what was done.

    Every check (priors, shard, store writable, dataset compatible) happens before any simulation.
    The design is streamed: points are drawn as the pool needs them and at most ``2 * workers``
    groups are in flight, so memory does not grow with n (only with the records already stored).
    """
    t0 = time.perf_counter()
    design.check_physical(simulator.box_len)
    if workers < 1:
        raise ValueError(f"simulation.workers={workers}: must be >= 1")
    indices = design.indices(shard, num_shards)
    store.check_writable()
    dataset = store.create_dataset(
        name or simulator.default_name(),
        simulator.spec(),
        list(design.priors),
        simulator.redshifts,
        simulator.k(),
    )
    stored = dataset.read_table(include_failed=not retry_failed).select(["key", "index"])
    keys, record_indices = stored["key"].to_pylist(), stored["index"].to_pylist()
    present = set(keys)
    planned = len(indices)
    expected_present = _count_present(design, indices, keys, record_indices, present)
    log.info(
        "dataset %s: %d of %d points in shard %d/%d to simulate",
        dataset.name,
        planned - expected_present,
        planned,
        shard,
        num_shards,
    )
    skipped = computed = failed = 0

    def todo() -> Iterator[dict]:
        nonlocal skipped
        for i in indices:
            p = design.point(i)
            if record_key(p["params"], p["seed"]) in present:
                skipped += 1
            else:
                yield p

    groups = _groups(todo())
    bar = _Progress(planned - expected_present, progress)

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
        head = list(islice(groups, 2))  # a single group is not worth starting a pool for
        if workers == 1 or len(head) <= 1:
            for g in chain(head, groups):
                write(simulator.run(g))
        else:
            ctx = mp.get_context("spawn")  # no inherited OpenMP/FFTW state from the parent
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=worker_init, initargs=(simulator.n_threads,)
            ) as pool:
                queue = chain(head, groups)
                pending = {pool.submit(simulator.run, g) for g in islice(queue, workers * 2)}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        write(fut.result())
                        pending.update(pool.submit(simulator.run, g) for g in islice(queue, 1))
    finally:
        bar.close()
    if computed:
        dataset.compact()
    total = len(dataset)
    return RunSummary(
        dataset.name,
        str(dataset.path),
        planned,
        skipped,
        computed,
        failed,
        total,
        time.perf_counter() - t0,
    )
