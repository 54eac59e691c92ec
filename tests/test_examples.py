"""The learner-facing examples run and check themselves."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_backprop_walkthrough_runs(capsys):
    runpy.run_path(str(EXAMPLES / "backprop_walkthrough.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "gradcheck: analytic gradients match" in out
