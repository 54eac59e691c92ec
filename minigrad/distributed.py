"""Data parallel on existing engines: MPI between processes (CPU arrays), NCCL between GPUs.

llm.c's recipe: MPI starts the processes (`mpiexec -n N python ...`); on GPUs rank 0 makes an NCCL
id (`ncclGetUniqueId`), MPI broadcasts it, and every rank joins one NCCL communicator with it. On
CPUs the collectives are MPI's own (mpi4py on numpy arrays). Nothing here is home-made transport.

    comm = minigrad.distributed.init("auto", device)   # "none" without mpiexec: one rank, no-ops
    comm.broadcast_(flat_parameters)                    # rank 0's values everywhere
    comm.all_reduce_(flat_gradients, average=True)      # in place: the mean over ranks

`pip install -e ".[dist]"` installs mpi4py and MPICH's wheel (mpich). A launch with several ranks
but no mpi4py is refused with one line (DistributedError).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

# what launchers set in each rank's environment: MPICH/Hydra (PMI_*), Open MPI, Slurm
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


class DistributedError(RuntimeError):
    """A launch that cannot work (missing mpi4py, unknown backend, ...): one line."""


def launched_ranks() -> int:
    """How many ranks the launcher started, from its environment variables (1 when not launched by one)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


class Single:
    """One process: every collective is a no-op."""

    backend = "none"
    rank, size, local_rank, local_size = 0, 1, 0, 1

    def broadcast_(self, array: Any, root: int = 0) -> Any:
        return array

    def all_reduce_(self, array: Any, average: bool = False) -> Any:
        return array

    def all_reduce_host(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a few Python numbers (the step's loss, a stop flag)."""
        return list(values)

    def gather_host(self, value: Any) -> list:
        """Every rank's value, in rank order, on every rank (small Python objects)."""
        return [value]

    def bcast_host(self, value: Any, root: int = 0) -> Any:
        """root's value on every rank (a small Python object)."""
        return value

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        sys.exit(code)


class MPI(Single):
    """Collectives over MPI (mpi4py) on host (numpy) arrays; device arrays go through the host."""

    backend = "mpi"

    def __init__(self, comm: Any = None, device: Any = None) -> None:
        self.device = device
        try:
            from mpi4py import MPI as mpi
        except ImportError:
            raise DistributedError("data parallel needs mpi4py: pip install -e \".[dist]\" (mpi4py + mpich)") from None
        self._mpi = mpi
        self.comm = comm if comm is not None else mpi.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank, self.local_size = _on_this_host(self.comm, mpi)

    def broadcast_(self, array: Any, root: int = 0) -> Any:
        host = self._to_host(array)
        self.comm.Bcast(host, root=root)
        self._back(array, host)
        return array

    def all_reduce_(self, array: Any, average: bool = False) -> Any:
        host = self._to_host(array)
        self.comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        if average:
            host /= self.size
        self._back(array, host)
        return array

    def _to_host(self, array: Any) -> Any:
        """array itself when it is a contiguous numpy array, else a host copy (device arrays)."""
        import numpy as np
        if isinstance(array, np.ndarray) and array.flags.c_contiguous:
            return array
        from minigrad import backend
        return np.ascontiguousarray(backend.to_numpy(array))

    def _back(self, array: Any, host: Any) -> None:
        if host is not array:
            from minigrad import backend
            array[...] = backend.from_numpy(self.device, host) if self.device is not None else host

    def all_reduce_host(self, values: list[float]) -> list[float]:
        import numpy as np
        buf = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        return buf.tolist()

    def gather_host(self, value: Any) -> list:
        return self.comm.allgather(value)

    def bcast_host(self, value: Any, root: int = 0) -> Any:
        return self.comm.bcast(value, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank now. The caller's error line travels to the launcher's stderr through mpiexec's I/O
        forwarding, which MPI_Abort tears down: flush and give it a moment first, so the line is not lost."""
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(0.5)
        self.comm.Abort(code)


class NCCL(MPI):
    """All-reduce and broadcast of device arrays with NCCL (cupy.cuda.nccl); MPI only sets it up."""

    backend = "nccl"

    def __init__(self, device: Any, comm: Any = None, nccl: Any = None) -> None:
        super().__init__(comm, device)
        if nccl is None:
            from minigrad import backend
            nccl = backend.nccl_module()
            device.xp.cuda.Device(device.index or 0).use()  # the communicator binds the current GPU
        self.nccl = nccl
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)  # the id travels over MPI, as in llm.c
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _args(self, array: Any) -> tuple:
        kinds = {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64,
                 "float16": self.nccl.NCCL_FLOAT16}
        if array.dtype.name not in kinds or not array.flags.c_contiguous:
            raise DistributedError(f"NCCL: cannot reduce a {array.dtype} array (contiguous float16/32/64 only)")
        stream = self.device.xp.cuda.get_current_stream().ptr
        return kinds[array.dtype.name], stream

    def broadcast_(self, array: Any, root: int = 0) -> Any:
        kind, stream = self._args(array)
        self.nccl_comm.bcast(array.data.ptr, array.size, kind, root, stream)
        return array

    def all_reduce_(self, array: Any, average: bool = False) -> Any:
        kind, stream = self._args(array)
        self.nccl_comm.allReduce(array.data.ptr, array.data.ptr, array.size, kind, self.nccl.NCCL_SUM, stream)
        if average:
            array /= self.size
        return array


def _on_this_host(comm: Any, mpi: Any) -> tuple:
    """(this rank's number among the ranks on its host, how many ranks share the host)."""
    try:
        node = comm.Split_type(mpi.COMM_TYPE_SHARED)
        return node.Get_rank(), node.Get_size()
    except Exception:  # a fake or limited communicator: the launcher's variables, else one rank per host
        for var in _LOCAL_RANK_VARS:
            value = os.environ.get(var)
            if value and value.isdigit():
                return int(value), int(os.environ.get("MPI_LOCALNRANKS", "1"))
        return 0, 1


def init(backend: str = "auto", device_name: str = "cpu") -> tuple:
    """(communicator, device) for this process.

    "auto" picks none (one process), mpi (CPU arrays) or nccl (GPUs) from the launch. With several
    ranks on `cuda`, each rank takes the GPU of its local rank (cuda:0, cuda:1, ... on each host).
    """
    from minigrad import backend as devices
    ranks = launched_ranks()
    on_gpu = device_name.split(":")[0] == "cuda"
    if backend == "auto":
        backend = "none" if ranks <= 1 else ("nccl" if on_gpu else "mpi")
    if backend not in ("none", "mpi", "nccl"):
        raise DistributedError(f"unknown --dist {backend!r}: choose auto, none, mpi or nccl")
    if backend == "none":
        if ranks > 1:
            raise DistributedError(f"--dist none, but the launcher started {ranks} ranks: each would train alone "
                                   f"and write the same run folder (use --dist auto)")
        return Single(), devices.device(device_name)
    if backend == "nccl" and not on_gpu:
        raise DistributedError("--dist nccl needs --device cuda (NCCL reduces GPU arrays)")
    mpi = MPI()
    if on_gpu and mpi.size > 1 and device_name == "cuda":
        device_name = f"cuda:{mpi.local_rank}"  # one GPU per local rank
    dev = devices.device(device_name)
    mpi.device = dev
    return (NCCL(dev, comm=mpi.comm) if backend == "nccl" else mpi), dev


def env_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched by one); needs no MPI."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0
