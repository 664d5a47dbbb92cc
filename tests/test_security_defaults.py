"""Security defaults a user gets without asking: every server binds to the loopback interface,
model files are never unpickled, and the shipped code holds no unpickling call at all.

(The admin token of the prediction service is tested in tests/test_service.py.)
"""

from __future__ import annotations

import ast
import http.server
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fti_assets.cli import app
from fti_assets.lib.core.settings import PROJECT_ROOT
from fti_assets.service import server

LOOPBACK = "127.0.0.1"


def test_fti_serve_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda *a, **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == LOOPBACK
    server.main([])
    assert calls[1]["host"] == LOOPBACK
    # Binding elsewhere is possible, but only when asked for.
    CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert calls[2]["host"] == "0.0.0.0"


def test_fti_reports_serve_binds_to_loopback_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bound: list[tuple[str, int]] = []

    class FakeServer:
        def __init__(self, address: tuple[str, int], handler: Any) -> None:
            bound.append(address)

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    monkeypatch.setenv("FTI_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(http.server, "ThreadingHTTPServer", FakeServer)
    result = CliRunner().invoke(app, ["reports", "serve"])
    assert result.exit_code == 0, result.output
    assert bound == [(LOOPBACK, 3001)]


def test_makefile_starts_every_server_on_loopback() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    commands = re.findall(r"(?:dagster dev|dagster-webserver|fti serve|uvicorn)[^\n]*", makefile)
    assert any(c.startswith("dagster dev") for c in commands)
    for command in commands:
        host = re.search(r"(?:-h|--host)[ =](\S+)", command)
        assert host is not None and host.group(1) == LOOPBACK, (
            f"Makefile runs {command!r}; expected it to bind -h/--host {LOOPBACK}"
        )
    for command in re.findall(r"fti reports serve[^\n]*", makefile):
        assert "--host" not in command or f"--host {LOOPBACK}" in command, command


# Calls and modules that turn bytes into arbitrary Python objects (code execution on load).
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve"}
UNPICKLING_CALLS = {"torch.load", "marshal.loads", "marshal.load"}


def _unpickling_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in UNPICKLING_CALLS or func.endswith(".read_pickle"):
                found.append(f"{path}:{node.lineno}: {func}(...)")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{path}:{node.lineno}: {func}(allow_pickle=...)")
            continue
        else:
            continue
        found += [
            f"{path}:{node.lineno}: import {n}"
            for n in names
            if n.split(".")[0] in UNPICKLING_MODULES
        ]
    return found


def test_no_code_unpickles() -> None:
    """Model artifacts are LightGBM text + JSON (lib/registry/predictor.py): nothing may
    unpickle."""
    files = sorted((PROJECT_ROOT / "fti_assets").rglob("*.py"))
    assert len(files) > 20
    uses = [use for path in files for use in _unpickling_uses(path)]
    assert uses == [], "unpickling is not allowed:\n" + "\n".join(uses)


def test_the_scan_catches_unpickling(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import pickle\nfrom joblib import load\nimport numpy as np\nimport torch\n"
        "np.load('x.npy', allow_pickle=True)\ntorch.load('m.pt')\n"
        "import pandas as pd\npd.read_pickle('f')\nnp.load('y.npy')\n"
    )
    uses = _unpickling_uses(sample)
    assert [u.split(": ", 1)[1] for u in uses] == [
        "import pickle",
        "import joblib",
        "np.load(allow_pickle=...)",
        "torch.load(...)",
        "pd.read_pickle(...)",
    ]
