"""`fti-dbt`: runs the venv's dbt with the environment a Dagster dbt step chose for it.

A dbt step must tell dbt which lake to attach and which days to build (the profile and the
macros read ``FTI_LAKE_*`` and ``FTI_WINDOW_*`` with ``env_var``, which, unlike ``--vars``, does
not make dbt re-parse the whole project on every daily run). The step must not change its own
process's environment to do so (other steps, other threads, the rest of an in-process run see
it). So the step writes those variables into ``fti_env.json`` in the dbt invocation's own target
folder — unique per invocation, handed to dbt as ``DBT_TARGET_PATH`` by dagster-dbt — and runs
this wrapper as its dbt executable: it adds them to ITS environment and becomes dbt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ENV_FILE = "fti_env.json"


def dbt_executable() -> Path:
    """The dbt next to this interpreter (the venv's), whether or not the venv is on PATH."""
    return Path(sys.executable).with_name("dbt")


def write_env_file(target_path: Path, variables: dict[str, str]) -> Path:
    target_path.mkdir(parents=True, exist_ok=True)
    path = target_path / ENV_FILE
    path.write_text(json.dumps(variables, indent=2, sort_keys=True), encoding="utf-8")
    return path


def main() -> None:
    target = os.environ.get("DBT_TARGET_PATH")
    env = dict(os.environ)
    if target and (Path(target) / ENV_FILE).exists():
        env.update(json.loads((Path(target) / ENV_FILE).read_text(encoding="utf-8")))
    dbt = dbt_executable()
    os.execve(dbt, [str(dbt), *sys.argv[1:]], env)
