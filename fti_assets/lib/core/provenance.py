"""Which code made an artifact: datasets and model versions record the git sha of their code."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from fti_assets.lib.core.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)


def git_code_version(repo_dir: Path = PROJECT_ROOT) -> str:
    """The git commit sha of ``repo_dir``, or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("cannot read the git sha of %s (%s); code_version='unknown'", repo_dir, exc)
        return "unknown"
    sha = result.stdout.strip()
    if result.returncode != 0 or not sha:
        logger.warning("%s is not a git checkout with commits; code_version='unknown'", repo_dir)
        return "unknown"
    return sha
