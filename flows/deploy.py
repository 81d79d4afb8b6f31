"""Deployments of the night that the Prefect UI (and `prefect deployment run`) trigger.

    python -m flows.deploy        (what `make ui` runs, once the Prefect server is up)

- `sleep-cycle/on-demand`: the Run button; the Custom run form is NightParameters, typed and
  documented, its defaults from params.yaml.
- `sleep-cycle/nightly`: the same at 02:00 every night (cron), created paused: unpause it in the
  UI when the model should sleep on its own.
This process serves both (it is the worker): a triggered night runs here, in this checkout.
Each has a concurrency limit of 1 (a second Run waits in Prefect); across them, and across
every other door (`make run`, `dvc repro`), the night's lock (tasks/lock.py) refuses a second
night while one runs.
"""

from __future__ import annotations


def deployments():
    from flows.sleep_cycle import sleep_cycle

    tags = ["lmsleep"]
    return [
        sleep_cycle.to_deployment(name="on-demand", tags=tags, concurrency_limit=1,
                                  description="One night now: capture, curriculum, validate, seed, evaluate, register."),
        sleep_cycle.to_deployment(name="nightly", tags=tags, cron="0 2 * * *", paused=True, concurrency_limit=1,
                                  description="One night every night at 02:00 (paused until you unpause it)."),
    ]


def main() -> None:
    from prefect import serve

    serve(*deployments())


if __name__ == "__main__":
    main()
