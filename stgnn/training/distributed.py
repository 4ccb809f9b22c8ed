"""Data-parallel training over several processes with ``torch.distributed`` (launched by torchrun).

``torchrun --nproc-per-node K -m stgnn train ...`` starts ``K`` copies of the command; torchrun
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in each one's
environment.  :meth:`Distributed.from_env` reads them, :meth:`Distributed.setup` joins the
process group (``nccl`` on CUDA, each process on ``cuda:LOCAL_RANK``; ``gloo`` on CPU) and the
trainer then runs the same loop in every process with these rules:

* **The global batch is ``train.batch_size``**, split across the ranks: every epoch draws one
  permutation of the training windows from ``(seed, epoch)``, identically on every rank (as
  ``DistributedSampler`` with ``set_epoch`` does); global batch ``i`` is the windows
  ``perm[i * B : (i + 1) * B]``, exactly the batch a single process trains on, and rank ``r``
  takes every ``K``-th of them starting at ``r`` (:meth:`Distributed.shard`; the interleaving of
  ``DistributedSampler``, which is equivalent to it, but without padding: the last, shorter
  batch is split as evenly as possible).  A rank left without a window (a last batch of fewer
  than ``K`` windows) runs one masked-out window that contributes nothing.  The number of
  optimizer steps per epoch, the learning rate and every other setting therefore mean the same
  with any ``K``; a config trains the same model on 1 or 8 processes (see below for the
  tolerance).  To train with a larger global batch, raise ``batch_size`` (and, as usual for
  Adam, consider the learning rate yourself: nothing is rescaled automatically).
* **The loss is the masked mean over the global batch**: each step all-reduces the sum of
  absolute errors and the count of observed readings, and each rank back-propagates its own
  error sum divided by ``count / K`` so that DDP's gradient average equals the gradient of
  the single-process loss exactly (ranks that hold more missing readings are not over-weighted).
* **Validation and test windows are sharded** the same way and the metrics' sums and counts
  (:meth:`stgnn.metrics.MaskedMetrics.totals`, including the CRPS and interval sums of
  probabilistic heads) are all-reduced before dividing: never an
  average of per-rank averages.
* **Decisions are made once**: rank 0's validation MAE is broadcast, so the best epoch and early
  stopping are the same on every rank; only rank 0 locks the run folder, claims it, writes
  ``config.toml``, ``log.csv``, checkpoints and ``metrics.json``.  On ``--resume``, rank 0 reads
  the checkpoint and broadcasts it (other nodes need not see the folder).
* **Batch norm** (Graph WaveNet) uses the statistics of the global batch on CUDA
  (``SyncBatchNorm``); on CPU each rank's statistics of its own part (see :meth:`Distributed.wrap`).
* **Randomness**: weights are initialised from ``seed`` on every rank (and DDP copies rank 0's
  at the start); dropout and teacher forcing draw from ``(seed, epoch, rank)``.  Runs of models
  without such randomness (``lstm``, ``stgcn``/``gwnet`` with ``dropout = 0``, ...) match a
  single-process run up to floating-point summation order; with dropout they are equal in
  distribution, not in every draw.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Distributed"]

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job.

    Attributes:
        rank: Global rank ``0 .. world_size - 1``.
        world_size: Number of processes ``K``.
        local_rank: Rank on this machine (the CUDA device index on a GPU node).
    """

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Distributed | None:
        """The torchrun job this process belongs to, or ``None`` when it runs alone.

        A job of one process (``--nproc-per-node 1`` on one node) is treated as a plain run.

        Raises:
            ValueError: torchrun's variables are incomplete or not integers in range.
        """
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return None
        values: dict[str, int] = {}
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            text = env.get(key)
            if text is None:
                raise ValueError(f"environment: WORLD_SIZE is set but {key} is not (launch with torchrun)")
            try:
                values[key] = int(text)
            except ValueError:
                raise ValueError(f"environment: {key}={text!r} is not an integer") from None
        world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ValueError(f"environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} are inconsistent")
        if world == 1:
            return None
        return cls(rank=rank, world_size=world, local_rank=local)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and makes decisions."""
        return self.rank == 0

    # ------------------------------------------------------------------ setup
    def setup(self, device_name: str) -> str:
        """Join the process group and return the device name this process trains on.

        ``auto`` and ``cuda`` become this process's GPU (``cuda:LOCAL_RANK``, made the current
        device, backend ``nccl``) when CUDA is available; ``cpu`` (or ``auto`` without CUDA)
        uses ``gloo``.

        Raises:
            ValueError: A device with an explicit index (each process takes its own), or more
                processes on this machine than GPUs.
        """
        wants_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        if device_name not in ("auto", "cuda", "cpu"):
            raise ValueError(
                f"[train] device {device_name!r}: under torchrun each process takes its own device; "
                "use auto, cuda (cuda:LOCAL_RANK per process) or cpu"
            )
        if wants_cuda:
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise ValueError(f"LOCAL_RANK {self.local_rank}: only {count} CUDA device(s) on this machine; "
                                 "start at most that many processes per node (--nproc-per-node)")
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
        return f"cuda:{self.local_rank}" if wants_cuda else "cpu"

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ data
    def shard(self, items: Tensor) -> Tensor:
        """This rank's part of ``items``: every ``world_size``-th entry, starting at ``rank``."""
        return items[self.rank :: self.world_size]

    # ------------------------------------------------------------------ collectives
    def _comm_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum of ``tensor`` over all ranks (a new tensor on ``tensor``'s device)."""
        comm = tensor.detach().to(self._comm_device(), copy=True)
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        return comm.to(tensor.device)

    def all_reduce_sums(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """Key-by-key sums over all ranks of tensors of equal shapes (every rank holds the same keys)."""
        if not sums:
            return {}
        keys = sorted(sums)
        total = self.all_reduce_sum(torch.stack([sums[k].double() for k in keys]))
        return {k: total[i] for i, k in enumerate(keys)}

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object; tensors should be on the CPU)."""
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result (or raise its error) on every rank.

        An error on rank 0 (a locked or foreign run folder, say) thus stops every rank with the
        same message instead of leaving the others waiting in the next collective.
        """
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # re-raised below, on every rank
                error = exc
        result, error = self.broadcast((result, error))
        if error is not None:
            raise error
        return result

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel`.

        ``static_graph=True``: the parameters a step reaches are the same at every step (some
        models own parameters no forward reaches, e.g. Graph WaveNet's last graph convolution,
        as in its reference code); DDP finds them once instead of searching the autograd graph
        at every step (``find_unused_parameters``).  Buffers
        (batch-norm running statistics) are broadcast from rank 0 at every forward, DDP's
        default.  On CUDA, batch norms become :class:`~torch.nn.SyncBatchNorm`, whose training
        statistics cover the global batch as in a single process; on CPU (where torch has no
        synchronised batch norm) each rank normalises its own part of the batch, so Graph
        WaveNet's training steps differ slightly from a single process's there.
        """
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            index = device.index if device.index is not None else torch.cuda.current_device()
            return DistributedDataParallel(module, device_ids=[index], static_graph=True)
        return DistributedDataParallel(module, static_graph=True)
