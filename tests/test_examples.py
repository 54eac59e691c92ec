"""The learner-facing examples run and check themselves, and stay short.

The notebooks in examples/ are each paired with a .py twin in jupytext's percent format (examples/README.md):
the twin runs here as a script, the .ipynb must hold the same cells, and the .ipynb runs in a Jupyter kernel
through nbmake (the pytest plugin for notebooks; `pip install -e ".[dev]"` installs it, jupytext and ipykernel).
"""
import os
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEV_EXTRA = 'pip install -e ".[dev]"'
# each notebook and a line its last cells print once every check in it has passed
NOTEBOOKS = {
    "01_backprop_from_scratch": "gradcheck passed: backward matches finite differences for W1, b1, W2, b2",
    "02_gpt_block": "gradcheck passed for layer_norm",
}


def test_backprop_walkthrough_runs(capsys):
    runpy.run_path(str(EXAMPLES / "backprop_walkthrough.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "gradcheck: analytic gradients match" in out
    assert "df/du from a leaf copy of u" in out and "d loss/d W1" in out


def test_backprop_walkthrough_is_under_100_lines():
    assert len((EXAMPLES / "backprop_walkthrough.py").read_text().splitlines()) < 100


def test_readme_study_backprop_snippet_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Study backprop with minigrad", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})
    assert "grad_fn=<Sum>" in capsys.readouterr().out


def test_every_notebook_has_a_py_twin_and_is_tested():
    assert sorted(p.stem for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert all((EXAMPLES / f"{name}.py").exists() for name in NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_py_twin_runs_as_a_script(name, capsys):
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    assert NOTEBOOKS[name] in capsys.readouterr().out


def _cells(nb):
    return [(cell.cell_type, cell.source) for cell in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_matches_its_py_twin(name):
    jupytext = pytest.importorskip("jupytext", reason=f"the .py/.ipynb sync check needs jupytext: {DEV_EXTRA}")
    import nbformat

    stored = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    paired = jupytext.read(EXAMPLES / f"{name}.py")
    for i, (want, got) in enumerate(zip(_cells(paired), _cells(stored))):
        assert got == want, (f"examples/{name}.ipynb cell {i} differs from its .py twin; after editing either, "
                             f"run: jupytext --sync examples/{name}.ipynb")
    assert len(stored.cells) == len(paired.cells), f"cell counts differ; run: jupytext --sync examples/{name}.ipynb"
    # stored without outputs, so diffs show only what a person wrote
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"examples/{name}.ipynb is stored with outputs; clear them (Jupyter: Edit > Clear Outputs of All Cells) "
        f"or, with the .py up to date, rewrite it from the .py: jupytext --to ipynb examples/{name}.py")
    assert stored.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_in_a_kernel(name, monkeypatch):
    nb_run = pytest.importorskip("nbmake.nb_run", reason=f"running notebooks needs nbmake and ipykernel: {DEV_EXTRA}")
    pytest.importorskip("ipykernel", reason=f"running notebooks needs nbmake and ipykernel: {DEV_EXTRA}")
    # the kernel is a new process started in examples/: let it import this checkout even when not pip-installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = nb_run.NotebookRun(EXAMPLES / f"{name}.ipynb", default_timeout=120).execute()
    if result.error is not None:
        error = result.error
        report = f"examples/{name}.ipynb, cell {error.failing_cell_index}: {error.summary}\n{error.trace}"
        pytest.fail(re.sub(r"\x1b\[[0-9;]*m", "", report), pytrace=False)  # without the kernel's terminal colours
    printed = "".join(out.get("text", "") for cell in result.nb.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream")
    assert NOTEBOOKS[name] in printed
