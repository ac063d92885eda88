"""Evaluation cells on Ray actors (:class:`~sas_lens.distributed.RayExecutor`): the same run, results and resume
as the serial one.

The cells of a run are independent once their vectors exist, so the driver (this process) plans the run,
builds what cells share — vectors, strength units, conditions, topic alignments
(:meth:`EvalResources.prepare`) — and puts it in Ray's object store once; each actor loads one model and its
SAEs, adopts the shared objects and measures cells one at a time; the driver appends each finished cell to the
same ``cells.jsonl`` as a serial run, so resuming, ``results.json``, the CSVs, figures and reports do not
change. The unsteered cells that a serial run measures once per kind and behaviour are measured once here too,
and the copies filled in at the end. A cell that fails is reported in one :class:`~sas_lens.errors.EvalError`
after every other cell has finished and been saved; running again retries it.

Example:
    >>> sl.run_evaluation(cfg, "eval_out", executor="ray")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sas_lens.errors import EvalError
from sas_lens.evaluation.plan import Cell
from sas_lens.evaluation.resources import EvalResources
from sas_lens.evaluation.store import CellStore, cell_key


class CellWorker:
    """One model, its SAEs and the run's shared objects; measures the cells it is handed (a Ray actor's body).

    Args:
        cfg: the run's config.
        out_dir: the run's folder (workers write nothing there themselves).
        shared: what the driver built (:meth:`EvalResources.prepare`).
        model_factory: makes this worker's model; ``None`` loads ``cfg.model``.
    """

    def __init__(self, cfg, out_dir: str, shared: dict, model_factory: Callable | None = None):
        self.out_dir = Path(out_dir)
        self.res = EvalResources(cfg, self.out_dir, model_factory() if model_factory else None)
        self.res.adopt(shared)

    def run(self, cell: Cell) -> dict:
        from sas_lens.evaluation.runner import run_cell

        return run_cell(self.res, tuple(cell))


def run_cells_on_ray(
    executor, cells: list[Cell], store: CellStore, res: EvalResources, *, progress: bool = True
) -> None:
    """Measure ``cells`` on ``executor``'s actors and append each to ``store`` as it finishes.

    Args:
        executor: a :class:`~sas_lens.distributed.RayExecutor`.
        cells: the cells not yet in ``store``, in plan order.
        store: the run's ``cells.jsonl``.
        res: the driver's resources (they build the shared objects).
        progress: a tqdm bar over finished cells.

    Example:
        >>> run_cells_on_ray(RayExecutor(actors=4), pending, store, res)   # doctest: +SKIP
    """
    from sas_lens.evaluation.runner import cell_record, reuses_unsteered

    measured, copies, seen = [], [], set()
    for cell in cells:  # the unsteered model: one cell per kind and behaviour, as in a serial run
        if reuses_unsteered(cell) and (store.unsteered(*cell[:2]) is not None or cell[:2] in seen):
            copies.append(cell)
            continue
        if reuses_unsteered(cell):
            seen.add(cell[:2])
        measured.append(cell)
    if measured:
        ray = executor.connect()
        shared = ray.put(res.prepare(measured))
        executor.map(
            executor.worker or CellWorker,
            (res.cfg, str(res.out_dir), shared, executor.model_factory),
            "run",
            [(cell,) for cell in measured],
            lambda i, figures: store.add(cell_record(measured[i], figures)),
            names=[cell_key(*cell) for cell in measured],
            desc="evaluation cells",
            progress=progress,
        )
    for cell in copies:
        copied = store.unsteered(*cell[:2])
        if copied is not None:  # its measured cell may have failed: then the copy waits for the rerun
            store.add(cell_record(cell, {**copied, "seconds": 0.0}))
    if executor.report["failed"]:
        lines = "\n".join(f"  {key}: {why}" for key, why in executor.report["failed"])
        raise EvalError(
            f"{len(executor.report['failed'])} cell(s) failed on Ray; every other cell is saved in "
            f"{store.path}. Run again with the same --out to retry them.\n{lines}"
        )
