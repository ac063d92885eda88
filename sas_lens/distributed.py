"""Work spread over a pool of Ray actors, each loading its model once: how evaluation grids and latent indexes
leave one machine.

:class:`RayExecutor` says where (a cluster address, or a local cluster) and how (actors, GPUs and CPUs per
actor, how the actors get their model); :meth:`RayExecutor.map` hands independent tasks to the actors and
gives each result back as it arrives. An actor that dies (out of memory, a lost node) is replaced by a fresh
one and its task retried, up to ``max_retries`` times; a task that raises, or keeps killing its actor, is
reported, never dropped: the caller gets every failure with its reason.

Ray is optional: ``pip install -e ".[ray]"``.

Example:
    >>> sl.run_evaluation(cfg, "eval_out", executor=RayExecutor(address="auto", gpus_per_actor=1))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

INSTALL_HINT = 'Ray runs work on a cluster; install it with `pip install -e ".[ray]"` (or `pip install ray`).'


def import_ray():
    """``ray``, or a :class:`~sas_lens.errors.MissingExtraError` (an ImportError) that says how to install it.

    Example:
        >>> ray = import_ray()   # doctest: +SKIP
    """
    try:
        import ray
    except ImportError as err:
        from sas_lens.errors import MissingExtraError

        raise MissingExtraError(INSTALL_HINT) from err
    return ray


class RayExecutor:
    """Where and how work goes to Ray: the cluster, the actors and their resources.

    Args:
        address: a running cluster (``"auto"``, ``"ray://head:10001"``); ``None`` joins the cluster this process is
            already connected to, or starts a local one.
        actors: how many actors; default one per GPU of the cluster when it has GPUs, else one per
            ``cpus_per_actor`` CPUs.
        gpus_per_actor: GPUs each actor holds; default 1 when the cluster has GPUs, else 0.
        cpus_per_actor: CPUs each actor holds (its torch threads).
        model_factory: a picklable function that returns an actor's model, for a model other than the default
            one (``cfg.model`` for an evaluation, the embedded default for a latent index).
        max_retries: times a task is retried after its actor died.
        worker: the evaluation actor's class (tests use one that dies on purpose).

    Example:
        >>> RayExecutor(address="auto", gpus_per_actor=1)   # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float = 1,
        model_factory: Callable | None = None,
        max_retries: int = 2,
        worker: type | None = None,
    ):
        if actors is not None and actors < 1:
            raise ValueError(f"actors must be at least 1, got {actors}.")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}.")
        self.address, self.actors, self.gpus_per_actor = address, actors, gpus_per_actor
        self.cpus_per_actor, self.model_factory, self.max_retries = cpus_per_actor, model_factory, max_retries
        self.worker = worker
        self.report: dict[str, list] = {"retried": [], "failed": []}

    def check(self, model=None) -> None:
        """Refuse, before any work starts, what cannot work: Ray missing, or an in-memory model actors cannot get.

        Args:
            model: the caller's model, if it passed one.
        """
        import_ray()
        if model is not None and self.model_factory is None:
            raise ValueError(
                "Ray actors load their own model: with model=..., give RayExecutor(model_factory=...) "
                "a function that makes the same model, or leave model unset to load cfg.model."
            )

    def connect(self):
        """``ray``, initialised: the running cluster, the one at ``address``, or a new local one."""
        ray = import_ray()
        if not ray.is_initialized():
            # an offline driver means offline actors (no hub download at run time); otherwise the cluster decides
            offline = {"HF_HUB_OFFLINE": os.environ["HF_HUB_OFFLINE"]} if "HF_HUB_OFFLINE" in os.environ else {}
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": offline} if offline else None,
            )
        return ray

    def pool_size(self, n_tasks: int) -> tuple[int, float]:
        """``(actors, GPUs per actor)`` for ``n_tasks`` tasks on the connected cluster."""
        resources = self.connect().cluster_resources()
        gpus = float(self.gpus_per_actor if self.gpus_per_actor is not None else (1 if resources.get("GPU") else 0))
        if self.actors is not None:
            size = self.actors
        elif gpus:
            size = int(resources.get("GPU", 0) // gpus)
        else:
            size = int(resources.get("CPU", 1) // self.cpus_per_actor)
        return max(1, min(size, n_tasks)), gpus

    def map(
        self,
        worker: type,
        init_args: tuple,
        method: str,
        tasks: Sequence[tuple],
        on_result: Callable,
        *,
        names: Sequence[str] | None = None,
        desc: str = "tasks",
        progress: bool = True,
    ) -> None:
        """Run ``getattr(actor, method)(*task)`` for every task on a pool of ``worker`` actors.

        Results are handed to ``on_result(i, result)`` as they arrive (in completion order); ``self.report`` then
        lists the tasks retried (``"retried"``: names) and failed (``"failed"``: ``(name, why)``) in this call.

        Args:
            worker: the actor's class, built with ``worker(*init_args)`` (large arguments: pass ``ray.put`` refs).
            init_args: its constructor's arguments.
            method: the method each task calls.
            tasks: the arguments of each call.
            on_result: called with each task's index and result.
            names: how failures name tasks (default: their index).
            desc: the progress bar's label.
            progress: show a progress bar.
        """
        ray = self.connect()
        self.report = {"retried": [], "failed": []}
        names = list(names) if names is not None else [str(i) for i in range(len(tasks))]
        size, gpus = self.pool_size(len(tasks))
        actor_class = ray.remote(num_cpus=self.cpus_per_actor, num_gpus=gpus, max_restarts=0)(worker)
        idle = [actor_class.remote(*init_args) for _ in range(size)]
        queue, running, deaths = deque(range(len(tasks))), {}, {}
        bar = tqdm(total=len(tasks), desc=f"{desc} on {size} Ray actors", disable=not progress, unit="task")
        try:
            while queue or running:
                while queue and idle:
                    actor, i = idle.pop(), queue.popleft()
                    running[getattr(actor, method).remote(*tasks[i])] = (i, actor)
                (done,), _ = ray.wait(list(running), num_returns=1)
                i, actor = running.pop(done)
                try:
                    result = ray.get(done)
                except ray.exceptions.RayActorError as err:  # the actor died: a fresh one takes its place
                    ray.kill(actor)
                    idle.append(actor_class.remote(*init_args))
                    deaths[i] = deaths.get(i, 0) + 1
                    if deaths[i] <= self.max_retries:
                        self.report["retried"].append(names[i])
                        queue.appendleft(i)
                    else:
                        first_line = (str(err).strip().splitlines() or [""])[0][:300]  # e.g. why the model did not load
                        self.report["failed"].append(
                            (names[i], f"its actor died {deaths[i]} times ({type(err).__name__}: {first_line})")
                        )
                        bar.update()
                    continue
                except ray.exceptions.RayTaskError as err:  # the task raised: no retry would change that
                    idle.append(actor)
                    self.report["failed"].append((names[i], str(err.cause if err.cause else err)))
                    bar.update()
                    continue
                idle.append(actor)
                on_result(i, result)
                bar.update()
        finally:
            bar.close()
            for actor in idle + [actor for _, actor in running.values()]:
                ray.kill(actor)
