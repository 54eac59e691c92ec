"""The learner-facing examples run and check themselves, and stay short."""
import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


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
