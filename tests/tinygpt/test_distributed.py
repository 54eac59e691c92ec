"""Data parallel: `mpiexec -n 2 python -m tinygpt.train` (MPI on CPUs), and NCCL's call protocol with a fake.

The mpiexec tests need the [dist] extra (mpi4py + mpich) and skip without it; .ci/run installs it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minigrad import distributed
from tests.tinygpt.test_train import TEXT, losses

ROOT = Path(__file__).resolve().parents[2]


def mpiexec() -> str:
    pytest.importorskip("mpi4py", reason="data parallel needs the [dist] extra: pip install -e \".[dist]\"")
    exe = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    if not Path(exe).exists():
        pytest.skip("mpiexec not found (pip install -e \".[dist]\" installs MPICH's)")
    return exe


def launch(n: int, args: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [mpiexec(), "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, **kw)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def run_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "tinygpt.train", "--data", str(corpus), "--preset", "nano", "--tokenizer", "char",
            "--block-size", "16", "--lr", "3e-3", "--eval-interval", "4", "--eval-batches", "2", "--sample-tokens",
            "8", "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--no-progress", "--dtype", "float64",
            *extra]


def test_all_reduce_and_broadcast_are_exact_in_float64():
    code = (
        "import numpy as np\n"
        "from minigrad import distributed\n"
        "comm, dev = distributed.init('auto', 'cpu')\n"
        "assert comm.size == 2 and comm.backend == 'mpi'\n"
        "rng = np.random.default_rng(comm.rank)\n"
        "a = rng.standard_normal(1000)\n"
        "parts = comm.gather_host(a.tolist())\n"
        "comm.all_reduce_(a, average=True)\n"
        "want = (np.asarray(parts[0]) + np.asarray(parts[1])) / 2\n"
        "assert np.array_equal(a, want), np.abs(a - want).max()\n"
        "b = np.full(7, float(comm.rank))\n"
        "comm.broadcast_(b)\n"
        "assert not b.any()\n"
        "print('ok', comm.rank)\n")
    proc = launch(2, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok") == 2


def test_two_ranks_with_half_the_batch_each_equal_one_rank_with_all_of_it(corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ("--batch-size", "8", "--grad-accum", "2", "--max-steps", "8")
    proc = launch(1, run_args(corpus, one, *extra))
    assert proc.returncode == 0, proc.stderr
    proc = launch(2, run_args(corpus, two, *extra))
    assert proc.returncode == 0, proc.stderr
    assert "2 ranks over mpi" in proc.stdout.splitlines()[0]
    assert proc.stdout.count("done:") == 1  # only rank 0 talks
    np.testing.assert_allclose(losses(two), losses(one), rtol=0, atol=1e-12)
    from safetensors.numpy import load_file
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-12, err_msg=k)
    state = json.loads((two / "config.json").read_text())["state"]
    assert state["world_size"] == 2 and len(state["device_rng_ranks"]) == 2


def test_parameters_are_bitwise_identical_across_ranks_after_every_step(corpus, tmp_path):
    driver = (
        "import hashlib, sys\n"
        "import minigrad as mg\n"
        "from tinygpt import train\n"
        "real = mg.optim.AdamW.step\n"
        "def step(self, *a, **k):\n"
        "    out = real(self, *a, **k)\n"
        "    h = hashlib.sha256(self._flat.data.tobytes()).hexdigest()\n"
        "    digests = train.ARGS.comm.gather_host(h)\n"
        "    assert len(set(digests)) == 1, digests\n"
        "    step.n += 1\n"
        "    return out\n"
        "step.n = 0\n"
        "mg.optim.AdamW.step = step\n"
        "real_setup = train.setup\n"
        "def setup(args, given):\n"
        "    train.ARGS = args\n"
        "    return real_setup(args, given)\n"
        "train.setup = setup\n"
        "rc = train.main(sys.argv[1:])\n"
        "print('steps checked', step.n)\n"
        "sys.exit(rc)\n")
    args = run_args(corpus, tmp_path / "run", "--batch-size", "4", "--max-steps", "6", "--dropout", "0.1",
                    "--dtype", "float32")[2:]
    proc = launch(2, ["-c", driver, *args])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("steps checked 6") == 2


def test_ctrl_c_stops_every_rank_and_the_resume_is_exact(corpus, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    extra = ("--batch-size", "4", "--max-steps", "40", "--dropout", "0.1")
    assert launch(2, run_args(corpus, ref, *extra)).returncode == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, *run_args(corpus, run, *extra)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(losses(run) if (run / "metrics.jsonl").exists() else []) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # to the launcher, which passes it to every rank
    out, err = proc.communicate(timeout=60)
    if "interrupted: checkpoint of step" not in out:
        pytest.skip(f"the launcher did not pass SIGINT on to the ranks here (exit {proc.returncode})")
    saved = json.loads((run / "config.json").read_text())["state"]["step"]
    assert 10 <= saved < 40
    resumed = launch(2, ["-m", "tinygpt.train", "--resume", str(run), "--data", str(corpus), "--cache-dir",
                         str(tmp_path / "cache"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert losses(run) == losses(ref)


def test_resuming_with_another_world_size_is_refused_in_one_line(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert launch(2, run_args(corpus, run, "--batch-size", "4", "--max-steps", "4")).returncode == 0
    from tinygpt import train
    rc = train.main(["--resume", str(run), "--data", str(corpus), "--cache-dir", str(tmp_path / "cache"),
                     "--max-steps", "8", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "trained with 2 rank(s)" in err and "mpiexec -n 2" in err


def test_a_rank_that_raises_ends_the_whole_job(corpus, tmp_path):
    driver = (
        "import sys\n"
        "import minigrad as mg\n"
        "from minigrad import distributed\n"
        "from tinygpt import train\n"
        "real = mg.optim.AdamW.step\n"
        "def step(self, *a, **k):\n"
        "    step.n += 1\n"
        "    if step.n == 3 and distributed.env_rank() == 1:\n"
        "        raise MemoryError('rank 1 ran out of memory')\n"
        "    return real(self, *a, **k)\n"
        "step.n = 0\n"
        "mg.optim.AdamW.step = step\n"
        "sys.exit(train.main(sys.argv[1:]))\n")
    args = run_args(corpus, tmp_path / "run", "--batch-size", "4", "--max-steps", "200")[2:]
    proc = launch(2, ["-c", driver, *args], timeout=60)  # a hang (rank 0 waiting forever) raises TimeoutExpired
    assert proc.returncode != 0, (proc.returncode, proc.stderr[-2000:])
    assert "rank 1: error: MemoryError: rank 1 ran out of memory" in proc.stderr, (proc.stdout[-3000:], proc.stderr)


def test_a_multi_rank_launch_without_mpi4py_is_one_line(corpus, tmp_path):
    code = "import sys; sys.modules['mpi4py'] = None; from tinygpt.train import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PMI_SIZE="2", PMI_RANK="0")
    proc = subprocess.run([sys.executable, "-c", code, *run_args(corpus, tmp_path / "r", "--max-steps", "1")[2:]],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "mpi4py" in lines[0] and "[dist]" in lines[0]
    assert not (tmp_path / "r").exists()


def test_batch_not_divisible_by_the_ranks_is_refused(corpus, tmp_path):
    proc = launch(2, run_args(corpus, tmp_path / "r", "--batch-size", "5", "--max-steps", "1"))
    assert proc.returncode != 0
    assert "--batch-size 5 is not divisible by the 2 ranks" in proc.stderr


# ------------------------------------------------------------------ NCCL, with a fake library (no GPU)
class FakeNccl:
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_FLOAT16, NCCL_SUM = 7, 8, 6, 0
    calls: list = []

    @staticmethod
    def get_unique_id():
        return ("uid", 42)

    class NcclCommunicator:
        def __init__(self, size, uid, rank):
            FakeNccl.calls.append(("init", size, uid, rank))

        def allReduce(self, send, recv, count, kind, op, stream):
            FakeNccl.calls.append(("allReduce", send, recv, count, kind, op, stream))

        def bcast(self, ptr, count, kind, root, stream):
            FakeNccl.calls.append(("bcast", ptr, count, kind, root, stream))


class FakeMpiComm:
    """One rank of two, as MPI would present it."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def bcast(self, value, root=0):
        FakeNccl.calls.append(("mpi-bcast", value, root))
        return value


def test_nccl_gets_its_id_over_mpi_and_reduces_device_pointers_on_the_current_stream(monkeypatch):
    pytest.importorskip("mpi4py", reason="the NCCL set-up uses MPI: pip install -e \".[dist]\"")
    FakeNccl.calls = []
    stream = SimpleNamespace(ptr=1234)
    xp = SimpleNamespace(cuda=SimpleNamespace(get_current_stream=lambda: stream))
    dev = SimpleNamespace(xp=xp, type="cuda", index=0)
    comm = distributed.NCCL(dev, comm=FakeMpiComm(), nccl=FakeNccl)
    assert FakeNccl.calls[:2] == [("mpi-bcast", ("uid", 42), 0), ("init", 2, ("uid", 42), 0)]

    class Arr:  # what NCCL reads of a cupy array
        def __init__(self, n, dtype):
            self.size, self.dtype = n, np.dtype(dtype)
            self.data = SimpleNamespace(ptr=99)
            self.flags = SimpleNamespace(c_contiguous=True)
            self.divided = None

        def __itruediv__(self, k):
            self.divided = k
            return self

    a = Arr(10, "float32")
    comm.all_reduce_(a, average=True)
    assert FakeNccl.calls[-1] == ("allReduce", 99, 99, 10, FakeNccl.NCCL_FLOAT32, FakeNccl.NCCL_SUM, 1234)
    assert a.divided == 2
    comm.broadcast_(Arr(3, "float64"))
    assert FakeNccl.calls[-1] == ("bcast", 99, 3, FakeNccl.NCCL_FLOAT64, 0, 1234)
    with pytest.raises(distributed.DistributedError, match="cannot reduce a int64"):
        comm.all_reduce_(Arr(3, "int64"))


def test_dist_options_are_checked():
    with pytest.raises(distributed.DistributedError, match="--dist nccl needs --device cuda"):
        distributed.init("nccl", "cpu")
    comm, dev = distributed.init("auto", "cpu")
    assert comm.size == 1 and comm.backend == "none" and dev.type == "cpu"
