"""The GPU suite: cupy against numpy op by op (float32/float64, values and gradients), the fused kernels,
run-to-run determinism, and 20 tinygpt training steps whose losses match the numpy run to 1e-4.

Every test runs twice: on a real GPU (marked cuda: skipped without one, a failure when skipped under
MINIGRAD_REQUIRE_CUDA=1) and on the strict stand-in (a numpy-backed SIMULATION), so CI checks that the
suite itself runs and is device-clean even though only a GPU run checks CUDA's numbers.
`python -m minigrad.selftest --device cuda` runs the same checks (minigrad.selftest.CHECKS).
"""
from __future__ import annotations


import numpy as np
import pytest

from minigrad import backend, selftest
from tests.strict_cupy import cupy_or_skip
from tests.tinygpt.test_train import losses, small_args


@pytest.fixture(params=[pytest.param("gpu", marks=pytest.mark.cuda), "stand-in"])
def dev(request):
    if request.param == "gpu":
        return backend.device("cuda")
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    return make_device()


@pytest.mark.parametrize("check", selftest.CHECKS, ids=[c.__name__ for c in selftest.CHECKS])
def test_selftest_check_passes(dev, check):
    check(dev)


def test_twenty_tinygpt_training_steps_match_the_numpy_run(dev, tmp_path):
    """python -m tinygpt.train on the device and on the CPU from the same seed: losses agree to 1e-4."""
    from tinygpt import train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be, or not to be, that is the question: whether 'tis nobler in the mind. " * 60,
                      encoding="utf-8")

    def run(device):
        out = tmp_path / device.replace(":", "_")
        rc = train.main(small_args(corpus, out, "--eval-interval", "20", "--eval-batches", "1", "--device", device,
                                   "--max-steps", "20", "--dropout", "0"))
        assert rc == 0
        return np.array(losses(out))

    want, got = run("cpu"), run(str(dev))
    assert len(got) == 20 and got[-1] < got[0] - 0.3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_selftest_command_prints_a_pasteable_report(dev, capsys):
    assert selftest.main(["--device", str(dev)]) == 0
    out = capsys.readouterr().out
    assert f"minigrad selftest on {dev}" in out and "numpy" in out and "result: PASS" in out
    assert sum(line.startswith("  ") and line.split()[1:2] == ["PASS"] for line in out.splitlines()) == len(selftest.CHECKS)
