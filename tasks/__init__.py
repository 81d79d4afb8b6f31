"""Pipeline stages. Each module is a plain function (what a Prefect task wraps) and a CLI
(`python -m tasks.<stage>`, what dvc.yaml runs): one piece of code, two ways in."""
