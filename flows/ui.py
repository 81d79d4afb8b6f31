"""`make ui`: the Prefect UI, the MLflow UI, and the served night deployments, on 127.0.0.1.

    python -m flows.ui [--prefect-port 4200] [--mlflow-port 5000]

1. `prefect server start` (state in `.prefect/` beside the project), waits until healthy;
2. `mlflow server` on the project's store (registry.tracking_uri, SQLite by default);
3. serves flows/deploy.py's deployments in this process until Ctrl-C, then stops the two
   servers it started (by their PIDs, nothing else). One night at a time: the deployments'
   concurrency limit of 1, and the night's lock (tasks/lock.py) for every door.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wait_healthy(url: str, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefect-port", type=int, default=4200)
    ap.add_argument("--mlflow-port", type=int, default=5000)
    args = ap.parse_args(argv)
    from tasks.common import load_pipeline

    pipe = load_pipeline()
    env = {**os.environ, "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(Path(".prefect").resolve())),
           "PREFECT_API_URL": f"http://127.0.0.1:{args.prefect_port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    os.environ.update(env)
    bin_dir = Path(sys.executable).parent
    Path("mlflow").mkdir(exist_ok=True)
    started: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the servers too
    try:
        started.append(subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1",
                                         "--port", str(args.prefect_port)], env=env))
        started.append(subprocess.Popen([str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1",
                                         "--port", str(args.mlflow_port),
                                         "--backend-store-uri", pipe.registry.uri()], env=env))
        wait_healthy(f"http://127.0.0.1:{args.prefect_port}/api/health", "the Prefect server")
        wait_healthy(f"http://127.0.0.1:{args.mlflow_port}/health", "the MLflow server")
        print(f"\nPrefect UI  http://127.0.0.1:{args.prefect_port}   (Deployments > sleep-cycle > Run)")
        print(f"MLflow UI   http://127.0.0.1:{args.mlflow_port}   (Models > {pipe.registry.model_name})")
        print(f"or: PREFECT_API_URL={env['PREFECT_API_URL']} .venv/bin/prefect deployment run "
              "'sleep-cycle/on-demand'\n")
        from flows.deploy import main as serve

        serve()
    except KeyboardInterrupt:
        pass
    finally:
        for p in started:
            p.terminate()
        for p in started:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
