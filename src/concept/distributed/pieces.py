"""The clustering core's passes over every image, as Ray tasks over the Parquet shards.

`find_hierarchy_on_shards` is `concept.clustering.find_hierarchy` with every pass over the
images made by tasks that read their shards' vectors themselves; the driver holds only
what the non-linear stages see (at most `max_units` micro-cluster centres), the concept
centres, per-concept sums, and at the end each image's nearest concept and similarity
(12 bytes an image), never the vectors. The stages are the core's own functions:

1. cells: `summary.coarse_cells` on a sample of rows fetched by tasks (as on one machine);
2. micro-clusters: every row's cell (tasks), then Ray Data groups the rows by cell and each
   cell's `summary.spherical_kmeans` runs in a task, from the random state that cell starts
   from on one machine (`_micro_clusters`);
3. units: each row's nearest micro-cluster across cell borders (`summary.nearest_units`),
   and Ray Data groups the rows by unit to add each unit's vectors in one machine's order
   (`_unit_sum`); UMAP and HDBSCAN on the units on the driver;
4. refinement: `hierarchy.refine_centres`, the very loop `refine` runs, over `ShardRows`,
   whose passes are tasks returning per-concept counts and sums (a map-reduce of
   `label_sums`);
5. layers and confidence: the core's `layers_from_finest` on the driver (its passes, where the tree
   has no gap, again tasks).

Up to `max_units` images there is no summary (every image is its own unit, on the driver,
as on one machine). Pieces are scored as their whole pass would be (`top_matches(rows=)`)
and BLAS runs on one thread, so the result is `find_hierarchy`'s: the same concepts for every
image; only the refinement's sums are added shard by shard, so centres and confidences agree
to float32 rounding. Tasks are plain `ray.remote` functions, each over a group of shards;
results are summed as they arrive, so the driver holds one task's sums at a time beyond its
own.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from concept.clustering.kernels import directions
from concept.distributed._cluster import require_ray

logger = logging.getLogger(__name__)

#: Tasks per pass for each CPU of the cluster (shards are grouped to make about this many).
TASKS_PER_CPU = 4


def _read(file: str, column: str) -> np.ndarray:
    """A shard's vectors of the images that loaded, in its row order."""
    import pyarrow.parquet as pq

    from concept.distributed.embed import _vectors

    table = pq.read_table(file, columns=["ok", column])
    ok = table.column("ok").to_numpy(zero_copy_only=False).astype(bool)
    return _vectors(table.column(column))[ok]


# ---------------------------------------------------------------- what the tasks run

def _unit_labels(x: np.ndarray, start: int, plan: dict) -> np.ndarray:
    """Rows' unit (`nearest_units` across cell borders; with no summary, the row itself),
    then, if the plan has dense groups, the refinement's starting concept (-1: none)."""
    from concept.clustering.kernels import top_matches
    from concept.clustering.summary import nearest_units

    if plan.get("cell_centres") is None:
        labels = np.arange(start, start + len(x), dtype=np.int64)
    else:
        cc = plan["cell_centres"]
        cells = top_matches(x, cc, exact=False, rows=plan["n_rows"])[0][:, 0]
        order = np.argsort(cells, kind="stable")
        bounds = np.searchsorted(cells[order], np.arange(len(cc) + 1))
        labels = nearest_units(x, cc, plan["micro"], plan["owner"], order, bounds,
                               np.empty(len(x), np.int64), plan["cell_rows"])
        if plan.get("remap") is not None:
            labels = plan["remap"][labels]
    if plan.get("groups") is not None:
        labels = plan["groups"][labels]
    return labels


def _task(kind: str, files: list[str], starts: list[int], column: str, args: dict) -> dict:
    """One task of a pass over a group of shards; returns only small, reducible results."""
    from concept.clustering import one_blas_thread
    from concept.clustering.kernels import label_sums, top_matches
    from concept.clustering.passes import matches
    from concept.clustering.separation import side_moments

    out: dict[str, Any] = {"files": list(files)}
    with one_blas_thread():
        for file, start in zip(files, starts):
            x = _read(file, column)
            if kind == "count":
                out.setdefault("counts", []).append(len(x))
                continue
            if kind == "take":
                rows = args["positions"][(args["positions"] >= start) & (args["positions"] < start + len(x))]
                out.setdefault("rows", []).append(x[rows - start])
                continue
            if kind == "cells":  # images per summary cell
                labels = top_matches(x, args["cell_centres"], exact=False, rows=args["n_rows"])[0][:, 0]
            elif kind == "sums":  # units, or the refinement's starting concepts
                labels = _unit_labels(x, start, args)
            elif kind == "assign":
                within = args.get("within")
                labels = matches(x, args["centres"], within, exact=False, rows=args["n_rows"])[0]
                if args.get("previous") is not None:
                    before = matches(x, args["previous"], within, exact=False, rows=args["n_rows"])[0]
                    out["changed"] = out.get("changed", 0) + int(np.sum(labels != before))
            elif kind == "moments":  # separation.side_moments of this shard's rows
                leaf = args["leaf"][start:start + len(x)]
                part = side_moments(x, leaf, args["pair"], args["side"], args["ends"], args["counts"])
                out["moments"] = part if "moments" not in out else out["moments"] + part
                continue
            elif kind == "nearest":
                labels, sims = matches(x, args["centres"], args.get("within"), rows=args["n_rows"])
                out.setdefault("nearest", []).append(labels)
                out.setdefault("sims", []).append(sims)
            else:
                raise ValueError(kind)
            sums, counts = label_sums(x, labels, args["k"])
            out["sums"] = sums if "sums" not in out else out["sums"] + sums
            out["n"] = counts if "n" not in out else out["n"] + counts
    return out


# ---------------------------------------------------------------- the driver's side

@dataclass
class ShardStep:
    """One assignment pass over the shards (the `passes.Step` of `refine_centres`)."""

    centres: np.ndarray
    counts: np.ndarray
    changed: float | None
    sums: np.ndarray

    def means(self) -> np.ndarray:
        return directions(self.sums)


@dataclass
class ShardRows:
    """The loaded images of a run's shards, as the clustering core's passes see them; every
    pass is Ray tasks over groups of shards (`passes.Rows`).

    files: the shard files in plan order; column: "features" or "embedding"; counts: loaded
    images per file (found by the first pass when None); log: one entry per pass (its kind
    and the files its tasks read), for tests and benchmarks.
    """

    files: list[str]
    column: str
    counts: np.ndarray | None = None
    files_per_task: int | None = None
    log: list[tuple[str, list[str]]] = field(default_factory=list)
    final_sums: np.ndarray | None = None

    def __post_init__(self) -> None:
        ray = require_ray()
        self._remote = ray.remote(_task)
        if self.files_per_task is None:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self.files_per_task = max(1, math.ceil(len(self.files) / (TASKS_PER_CPU * cpus)))
        if self.counts is None:
            self.counts = np.asarray([c for part in self._pass("count", {}) for c in part["counts"]], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def _groups(self) -> list[tuple[list[str], list[int]]]:
        step = int(self.files_per_task)
        starts = getattr(self, "starts", np.zeros(len(self.files), np.int64))
        return [(self.files[i:i + step], [int(s) for s in starts[i:i + step]])
                for i in range(0, len(self.files), step)]

    def _pass(self, kind: str, args: dict, ordered: bool = True) -> list[dict]:
        """Run one pass; with `ordered` the task results in plan order, else summed as they
        arrive (only `sums`, `n`, `changed`)."""
        ray = require_ray()
        if self.counts is not None:  # pieces are scored as the whole pass would be (top_matches)
            args = {**args, "n_rows": len(self)}
        ref = ray.put(args)  # broadcast once per pass, not once per task
        refs = [self._remote.remote(kind, files, starts, self.column, ref) for files, starts in self._groups()]
        if ordered:
            results = ray.get(refs)
            self.log.append((kind, [f for r in results for f in r["files"]]))
            return results
        total: dict[str, Any] = {}
        read: list[str] = []
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            part = ray.get(done[0])
            read += part["files"]
            for key in ("sums", "n", "changed", "moments"):
                if key in part:
                    total[key] = part[key] if key not in total else total[key] + part[key]
        self.log.append((kind, read))
        return [total]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The rows at `positions` (sorted, among the loaded images), fetched by tasks."""
        parts = self._pass("take", {"positions": np.asarray(positions, np.int64)})
        return np.concatenate([r for part in parts for r in part["rows"]])

    def sums(self, k: int, plan: dict, kind: str = "sums") -> tuple[np.ndarray, np.ndarray]:
        """Per-label sums and counts of the images, labelled as `_unit_labels` does."""
        total = self._pass(kind, {**plan, "k": k}, ordered=False)[0]
        return total["sums"], total["n"]

    def assign(self, centres: np.ndarray, previous: ShardStep | None, within=None) -> ShardStep:
        args = {"centres": centres, "k": len(centres), "within": within,
                "previous": None if previous is None else previous.centres}
        total = self._pass("assign", args, ordered=False)[0]
        changed = None if previous is None else total.get("changed", 0) / max(len(self), 1)
        return ShardStep(centres, total["n"], changed, total["sums"])

    def side_moments(self, leaf: np.ndarray, pair: np.ndarray, side: np.ndarray, ends: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
        """`separation.side_moments` summed over the shards (`leaf` in plan order)."""
        args = {"leaf": np.asarray(leaf, np.int64), "pair": pair, "side": side, "ends": ends, "counts": counts}
        total = self._pass("moments", args, ordered=False)[0]
        return total.get("moments", np.zeros((len(ends), 2, 3)))

    def nearest(self, centres: np.ndarray, within=None) -> tuple[np.ndarray, np.ndarray]:
        """Every image's nearest centre and similarity (exact), in plan order; the concepts'
        sums over them are kept in `final_sums` (for the layers)."""
        parts = self._pass("nearest", {"centres": centres, "k": len(centres), "within": within})
        self.final_sums = sum(p["sums"] for p in parts if "sums" in p)
        return (np.concatenate([a for p in parts for a in p.get("nearest", [])]),
                np.concatenate([a for p in parts for a in p.get("sims", [])]))

    def nearest_at(self, positions: np.ndarray, centres: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`passes.Rows.nearest_at`: the rows fetched by tasks (`take`), scored on the driver
        as a pass over every row would score them."""
        from concept.clustering.kernels import label_sums
        from concept.clustering.passes import matches

        x = self.take(positions)
        labels, sims = matches(x, centres, rows=len(self))
        return labels, sims, label_sums(x, labels, len(centres))[0]


def _cell_rows(batch: dict, column: str, cell_centres: np.ndarray, cells: np.ndarray, n: int) -> dict:
    """Ray Data map: a batch of (file, start) rows -> the position, cell and vector of every
    loaded image in one of `cells`."""
    from concept.clustering import one_blas_thread
    from concept.clustering.kernels import top_matches

    positions, cell, vectors = [], [], []
    for file, start in zip(batch["file"], batch["start"]):
        x = _read(str(file), column)
        with one_blas_thread():
            c = top_matches(x, cell_centres, exact=False, rows=n)[0][:, 0]
        keep = np.isin(c, cells)
        positions.append(np.arange(int(start), int(start) + len(x), dtype=np.int64)[keep])
        cell.append(c[keep])
        vectors.append(x[keep])
    return {"position": np.concatenate(positions), "cell": np.concatenate(cell),
            "vector": np.concatenate(vectors)}


def _generator(state: dict) -> np.random.Generator:
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    return rng


def _cell_units(group: dict, n: int, n_units: int, states: dict) -> dict:
    """Ray Data map_groups: one cell's rows (in plan order) -> its micro-cluster centres, and
    the random state after them (JSON)."""
    from concept.clustering import one_blas_thread
    from concept.clustering.summary import spherical_kmeans, units_in_cell

    order = np.argsort(group["position"], kind="stable")
    x = np.asarray(group["vector"], np.float32)[order]
    cell = int(group["cell"][0])
    rng = _generator(json.loads(states[cell]))
    with one_blas_thread():
        centres, _ = spherical_kmeans(x, units_in_cell(len(x), n, n_units), rng)
    end = json.dumps(rng.bit_generator.state)
    return {"cell": np.full(len(centres), cell, np.int64), "unit": np.arange(len(centres)),
            "centre": centres, "end": np.asarray([end] * len(centres), dtype=object)}


def _draw_starts(state: dict, sizes: np.ndarray, n: int, n_units: int, cells: list[int]) -> dict:
    """The random state each of `cells` starts from on one machine, where `summarise` runs
    the cells in turn on one generator, if no cell restarts an empty micro-cluster: each
    cell's k-means draws its k starting rows (`spherical_kmeans`: choice of k of its rows)."""
    from concept.clustering.summary import units_in_cell

    rng, starts = _generator(state), {}
    for cell in cells:
        starts[cell] = json.dumps(rng.bit_generator.state)
        size = int(sizes[cell])
        rng.choice(size, max(1, min(units_in_cell(size, n, n_units), size)), replace=False)
    return starts


def _micro_clusters(rows: ShardRows, cell_centres: np.ndarray, n_units: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell's micro-clusters (centres, each one's cell) and each cell's number of
    images: Ray Data groups the rows
    by cell and runs each cell's k-means in a task, from the random state that cell starts
    from on one machine, so the micro-clusters are the same. The states are drawn ahead
    assuming no cell restarts an empty micro-cluster; each task returns its end state, and
    the cells after one that did restart are run again from the right state (rare: no cell
    of OpenClipart, Fashion-MNIST or the test mixtures does)."""
    ray = require_ray()
    sizes = rows.sums(len(cell_centres), {"cell_centres": cell_centres}, kind="cells")[1]
    todo = [int(c) for c in np.flatnonzero(sizes > 0)]  # one machine skips empty cells
    state = rng.bit_generator.state
    done: dict[int, Any] = {}
    items = [{"file": f, "start": int(s)} for f, s in zip(rows.files, rows.starts)]
    while todo:
        starts = _draw_starts(state, sizes, len(rows), n_units, todo)
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_cell_rows, batch_size=rows.files_per_task, batch_format="numpy",
                            fn_kwargs={"column": rows.column, "cell_centres": cell_centres,
                                       "cells": np.asarray(todo), "n": len(rows)})
        ds = ds.groupby("cell").map_groups(_cell_units, batch_format="numpy",
                                           fn_kwargs={"n": len(rows), "n_units": n_units, "states": starts})
        out = ds.to_pandas()
        rows.log.append(("cells", list(rows.files)))
        groups = {int(c): g.sort_values("unit") for c, g in out.groupby("cell")}
        redo_from = None
        for i, cell in enumerate(todo):
            done[cell] = groups[cell]
            state = json.loads(groups[cell]["end"].iloc[0])
            if i + 1 < len(todo) and json.loads(starts[todo[i + 1]]) != state:
                logger.info("Summary cell %d restarted a micro-cluster: the cells after it run again.", cell)
                redo_from = i + 1
                break
        todo = [] if redo_from is None else todo[redo_from:]
    parts = [done[c] for c in sorted(done)]
    centres = np.concatenate([np.stack(g["centre"].to_numpy()) for g in parts]).astype(np.float32)
    owner = np.concatenate([g["cell"].to_numpy(np.int64) for g in parts])
    return centres, owner, sizes


def _unit_rows(batch: dict, column: str, plan: dict) -> dict:
    """Ray Data map: a batch of (file, start) rows -> every loaded image's position, unit (its
    nearest micro-cluster across cell borders) and vector."""
    from concept.clustering import one_blas_thread

    positions, units, vectors = [], [], []
    for file, start in zip(batch["file"], batch["start"]):
        x = _read(str(file), column)
        positions.append(np.arange(int(start), int(start) + len(x), dtype=np.int64))
        with one_blas_thread():
            units.append(_unit_labels(x, int(start), plan))
        vectors.append(x)
    return {"position": np.concatenate(positions), "unit": np.concatenate(units),
            "vector": np.concatenate(vectors)}


def _unit_sum(group: dict, chunk: int) -> dict:
    """Ray Data map_groups: one unit's rows -> their sum and count, added in the order and
    the float32/float64 steps of `mean_directions` over the whole array (row order, float32
    within each `chunk` of positions): the same bits as one machine's, which matters
    because UMAP turns a last-bit difference in its input into another layout."""
    from concept.clustering.kernels import label_sums

    order = np.argsort(group["position"], kind="stable")
    x = np.asarray(group["vector"], np.float32)[order]
    part = np.asarray(group["position"])[order] // chunk
    total = np.zeros(x.shape[1], np.float64)
    for c in np.unique(part):
        rows = part == c
        total += label_sums(x[rows], np.zeros(int(rows.sum()), np.int64), 1)[0][0]
    return {"unit": np.asarray([int(group["unit"][0])]), "sum": total[None, :],
            "count": np.asarray([len(x)])}


def _unit_sums(rows: ShardRows, plan: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of every unit's images, grouped by unit by Ray Data (`_unit_sum`)."""
    import inspect

    from concept.clustering.kernels import mean_directions

    ray = require_ray()
    chunk = inspect.signature(mean_directions).parameters["chunk"].default
    items = [{"file": f, "start": int(s)} for f, s in zip(rows.files, rows.starts)]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(_unit_rows, batch_size=rows.files_per_task, batch_format="numpy",
                        fn_kwargs={"column": rows.column, "plan": plan})
    out = ds.groupby("unit").map_groups(_unit_sum, batch_format="numpy", fn_kwargs={"chunk": chunk}).to_pandas()
    rows.log.append(("units", list(rows.files)))
    sums = np.zeros((k, len(plan["micro"][0])), np.float64)
    counts = np.zeros(k, np.int64)
    unit = out["unit"].to_numpy(np.int64)
    sums[unit] = np.stack(out["sum"].to_numpy())
    counts[unit] = out["count"].to_numpy(np.int64)
    return sums, counts


@dataclass
class ShardSummary:
    """The units the non-linear stages see, and how a task finds each row's unit."""

    centres: np.ndarray
    weights: np.ndarray
    plan: dict


def summarise_shards(rows: ShardRows, n_units: int, rng: np.random.Generator) -> ShardSummary:
    """`summary.summarise` over the shards: about `n_units` micro-clusters of every image."""
    from concept.clustering.summary import coarse_cells

    n = len(rows)
    if n <= n_units:  # every image its own unit, as on one machine
        return ShardSummary(rows.take(np.arange(n)), np.ones(n, np.float64), {})
    cell_centres = coarse_cells(rows.take, n, n_units, rng)
    micro, owner, cell_rows = _micro_clusters(rows, cell_centres, n_units, rng)
    plan = {"cell_centres": cell_centres, "micro": micro, "owner": owner, "cell_rows": cell_rows,
            "n_rows": n}
    sums, counts = _unit_sums(rows, plan, len(micro))
    keep = counts > 0
    plan["remap"] = np.cumsum(keep) - 1
    return ShardSummary(directions(sums[keep]), counts[keep].astype(np.float64), plan)


def find_hierarchy_on_shards(rows: ShardRows, min_size: int, *, max_units: int | None = 20_000,
                             threshold: float | None = None, random_state: int | None = None):
    """`find_hierarchy` over the loaded images of `rows`, every pass over them a Ray task:
    a `Hierarchy` whose per-image arrays cover every loaded image in plan order.

    Runs with BLAS on one thread, driver and tasks alike, as `ConceptModel.fit` runs the
    core: a product on several BLAS threads rounds differently, and on Fashion-MNIST's
    10,000 images that alone changed 58 concepts into 56."""
    from concept.clustering import one_blas_thread

    with one_blas_thread():
        return _find_hierarchy_on_shards(rows, min_size, max_units, threshold, random_state)


def _find_hierarchy_on_shards(rows: ShardRows, min_size: int, max_units: int | None,
                              threshold: float | None, random_state: int | None):
    from concept.clustering.core import layers_from_finest, n_units, unit_groups
    from concept.clustering.hierarchy import (
        OUTLIER_THRESHOLD,
        refine_centres,
        starting_groups,
    )

    threshold = OUTLIER_THRESHOLD if threshold is None else threshold
    rng = np.random.default_rng(random_state)
    n = len(rows)
    summary = summarise_shards(rows, n_units(n, max_units), rng)
    units = len(summary.centres)
    logger.info("Clustering %d images as %d units, every pass over the images as Ray tasks.", n, units)
    groups, steps = unit_groups(summary.centres, summary.weights, n, min_size, random_state)
    # refine's starting centres: the mean direction of each dense group's images.
    start, k = starting_groups(groups)
    sums, _ = rows.sums(k, {**summary.plan, "groups": start})
    nearest, centres, sims = refine_centres(rows, directions(sums), min_size, steps)
    return layers_from_finest(rows, nearest, centres, sims, rows.final_sums, min_size, threshold, units,
                              join=units < n)
