"""One-way imports: the contracts in pyproject.toml's [tool.importlinter], checked by import-linter."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason='the import contracts need import-linter: pip install -e ".[dev]"')
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    contracts = (ROOT / "pyproject.toml").read_text(encoding="utf-8").count("[[tool.importlinter.contracts]]")
    assert contracts >= 3 and "0 broken" in proc.stdout and f"{contracts} kept" in proc.stdout


def test_importing_minigrad_never_imports_tinygpt_or_bpe():
    code = "import sys, minigrad; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tinygpt', 'bpe')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
