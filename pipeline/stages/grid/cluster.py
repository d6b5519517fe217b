"""Where the chains run: an embedded Dask cluster sized to this machine, or a running one.

CPU: one single-threaded worker process per core (``grid.workers``), so torch in each uses
one thread and N chains use N cores without oversubscribing them. CUDA: ``grid.per_device``
workers per GPU, each pinned to its GPU with CUDA_VISIBLE_DEVICES (so ``cuda`` inside a
worker is its own device). ``grid.scheduler``/``--scheduler``: connect to any running Dask
scheduler (dask-jobqueue on Slurm, ``dask scheduler`` by hand) and use its workers as they are.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any

from pipeline.infra.config import Params


@dataclass
class Engine:
    client: Any  # distributed.Client
    cluster: Any | None  # the embedded cluster, None for an existing scheduler
    threads: int | None  # torch threads per chain (None: the worker's own setting)
    device: str | None  # device override for every stage (None: params decide)
    description: str

    @property
    def dashboard(self) -> str | None:
        """The Dask dashboard's address, when it is served (bokeh installed)."""
        if importlib.util.find_spec("bokeh") is None:
            return None
        try:
            return self.client.dashboard_link
        except Exception:
            return None

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _gpus(params: Params) -> list[int]:
    """The GPU indices the chains train on: none when train.device is the CPU (or auto on a
    machine without CUDA), the one named by cuda:N, else every visible GPU."""
    device = params.train.device
    if device == "cpu":
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    if device.startswith("cuda:"):
        return [int(device.split(":", 1)[1])]
    return list(range(torch.cuda.device_count()))


def worker_specs(
    params: Params, gpus: list[int], cores: int, chains: int | None = None
) -> dict[str, dict[str, Any]]:
    """Worker name -> its environment: per GPU ``grid.per_device`` workers pinned to it, or
    ``grid.workers`` (default ``cores``) CPU workers that see no GPU; no more than ``chains``
    (a worker costs seconds of imports, and one chain runs on one worker), spread over the
    GPUs first."""
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if gpus:
        specs = {
            f"gpu{g}-{k}": {**one, "CUDA_VISIBLE_DEVICES": str(g)}
            for k in range(params.grid.per_device)
            for g in gpus
        }
    else:
        n = params.grid.workers or cores
        specs = {f"cpu-{k}": {**one, "CUDA_VISIBLE_DEVICES": ""} for k in range(n)}
    if chains is not None:
        specs = dict(list(specs.items())[: max(1, chains)])
    return specs


def start(params: Params, scheduler: str | None = None, chains: int | None = None) -> Engine:
    """A Dask client on ``scheduler`` (default ``grid.scheduler``) or an embedded cluster of
    at most ``chains`` workers."""
    from distributed import Client

    address = scheduler or params.grid.scheduler
    if address:
        try:
            client = Client(address, timeout="20s")
        except OSError as err:
            from pipeline.stages.grid.plan import GridError

            raise GridError(f"Dask scheduler {address} is unreachable ({err})") from None
        n = len(client.scheduler_info().get("workers", {}))
        return Engine(client, None, None, None, f"{address} ({n} workers now)")

    from distributed import Nanny, Scheduler, SpecCluster

    gpus = _gpus(params)
    specs = worker_specs(params, gpus, os.cpu_count() or 1, chains)
    dashboard = importlib.util.find_spec("bokeh") is not None
    cluster = SpecCluster(
        scheduler={
            "cls": Scheduler,
            "options": {"host": "127.0.0.1", "dashboard": dashboard, "dashboard_address": ":0"},
        },
        workers={
            name: {
                "cls": Nanny,
                # memory_limit 0: a chain's memory is torch's, not Dask data to spill or
                # pause on; one thread: one chain at a time per worker.
                "options": {
                    "nthreads": 1,
                    "memory_limit": 0,
                    "env": env,
                    "host": "127.0.0.1",
                    # the view is the progress and a failed chain its one line (Dask would log
                    # the traceback of every failed task)
                    "silence_logs": logging.CRITICAL,
                },
            }
            for name, env in specs.items()
        },
        name="pipeline-grid",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    what = f"{len({env['CUDA_VISIBLE_DEVICES'] for env in specs.values()})} GPU" if gpus else "CPU"
    return Engine(
        client,
        cluster,
        threads=None if gpus else 1,
        # a worker pinned to GPU N sees it as cuda:0; "auto" and "cuda" resolve to it as is
        device="cuda" if params.train.device.startswith("cuda:") else None,
        description=f"embedded cluster, {len(specs)} workers ({what})",
    )
