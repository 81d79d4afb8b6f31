"""The dream stage's trials as Prefect task runs, on the task runner params.yaml names.

    fan_out = trials_fan_out(pipe.trials)      # what the sleep-cycle flow hands tasks.dream.dream
    outcomes = fan_out(jobs)                   # one `dream-trial` task run per kept dream

Each trial (tasks/dream.py `trial`) trains a copy of tonight's expert on one dream and scores it
on tau: independent of the others, so they map over a pool (`trials.runner`): `thread` (a local
pool; trials in one process take turns on its one copy of the brain), `dask` (prefect-dask: a
local cluster of `trials.workers` processes, or the scheduler at `trials.address`), `ray`
(prefect-ray, the same way). The code is the same for all three; only the runner changes.
"""

from __future__ import annotations

from prefect import flow, task

from tasks.common import Trials
from tasks.dream import trial


@task(name="dream-trial")
def dream_trial(job: dict) -> dict:
    return trial(**job)


@flow(name="dream-trials")
def dream_trials(jobs: list[dict]) -> list[dict]:
    return dream_trial.map(jobs).result()


def task_runner(config: Trials):
    """The task runner `trials:` names (the extras are imported only when asked for)."""
    if config.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address:
            return DaskTaskRunner(address=config.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    if config.runner == "ray":
        from prefect_ray import RayTaskRunner

        return RayTaskRunner(address=config.address) if config.address else RayTaskRunner()
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=config.workers)


def trials_fan_out(config: Trials):
    """`jobs -> outcomes`, in order, through the `dream-trials` flow on `config`'s runner."""
    def fan_out(jobs: list[dict]) -> list[dict]:
        return dream_trials.with_options(task_runner=task_runner(config))(jobs) if jobs else []

    return fan_out
