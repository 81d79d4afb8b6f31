"""`make serve`: the champion over HTTP, on 127.0.0.1, with MLflow's scoring server.

    python -m flows.serve [--port 5001] [--alias champion]

Serves `models:/<registry.model_name>@<alias>` from the project's registry (params.yaml
`registry:`) in this environment (`--env-manager local`: the venv already holds what the
model's pinned requirements name). Ask it:

    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_split": {"columns": ["question"], "data": [["Where was Ana Lo born?"]]}}'
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def command(model_name: str, alias: str, port: int) -> list[str]:
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "models", "serve", "-m", f"models:/{model_name}@{alias}", "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--alias", default="champion")
    args = ap.parse_args(argv)
    from tasks.common import load_pipeline

    pipe = load_pipeline(args.params)
    # MLflow's server starts `uvicorn` by name: the venv's bin first, activated or not.
    env = {**os.environ, "MLFLOW_TRACKING_URI": pipe.registry.uri(), "MLFLOW_REGISTRY_URI": pipe.registry.uri(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    print(f"serving models:/{pipe.registry.model_name}@{args.alias} on http://127.0.0.1:{args.port}/invocations")
    cmd = command(pipe.registry.model_name, args.alias, args.port)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
