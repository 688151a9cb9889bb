"""Data-parallel training under ``torchrun`` (torch.distributed + DistributedDataParallel).

A job started by ``torchrun --nproc-per-node=N`` (or ``-P nproc=N``, which launches torchrun) runs
the same program in N processes. What each one does (see docs/scaling.md):

* **process group**: gloo on CPU, nccl on CUDA; ``LOCAL_RANK`` picks the GPU;
* **data**: each rank trains on a disjoint, class-stratified shard of the training rows, with the
  family's own sampler (m-per-class, class-balanced) built on that shard, so every rank's batch
  keeps the sampler's guarantee and no cross-rank mining is needed;
* **gradients**: the model is wrapped in ``DistributedDataParallel`` (all-reduce during backward);
* **validation**: each rank embeds a slice (or its training shard) and the embeddings are gathered
  to every rank, so the SVM / UMAP / curve stages see the whole set; rank 0's epoch metrics are
  broadcast so every rank takes the same early-stopping and budget decisions;
* **side effects**: only rank 0 talks to MLflow, writes checkpoints and registers models; every
  rank reads the checkpoint to resume.

Only the glue torch does not ship is here: the class-stratified shard (``DistributedSampler``
shards indices only and would break the m-per-class guarantee), gathering numpy embeddings in rank
order, and averaging the gradients of loss parameters that live outside the DDP-wrapped model.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (``world_size == 1``: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` when training rows are split across ranks, else None."""
        return (self.rank, self.world_size) if self.enabled else None


def from_env() -> DistContext:
    """The job's layout from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext()
    return DistContext(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def ensure() -> DistContext:
    """Join the process group when torchrun started this process (idempotent); the context."""
    ctx = from_env()
    if ctx.enabled and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(ctx.local_rank)
        backend = "nccl" if cuda else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's agent keeps one store for the whole job; its keys outlive a restart, and
            # a restarted rank would read the dead attempt's addresses (gloo: "Connection refused").
            # Keys are kept apart per attempt, as torch's own launcher once did.
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), ctx.world_size,
                                  is_master=False)
            dist.init_process_group(backend, store=dist.PrefixStore(f"/zoo/attempt_{restart_count()}", store),
                                    rank=ctx.rank, world_size=ctx.world_size)
        else:
            dist.init_process_group(backend)
        log.info("rank %d of %d joined the process group (%s)", ctx.rank, ctx.world_size, dist.get_backend())
        if not ctx.is_main:  # rank 0 reports for the job; the others speak only of errors
            logging.getLogger("zoo").setLevel(logging.ERROR)
    return ctx


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session() -> Iterator[DistContext]:
    """``ensure()`` on entry, leave the process group on exit (a job's whole lifetime)."""
    owned = from_env().enabled and not dist.is_initialized()  # a nested session leaves the group up
    ctx = ensure()
    try:
        yield ctx
    finally:
        if owned:
            shutdown()


def context() -> DistContext:
    """The current layout; a single process unless a process group is up."""
    ctx = from_env()
    return ctx if ctx.enabled and dist.is_initialized() else DistContext()


# --- collectives (no-ops in a single process) --------------------------------------------------
def broadcast(obj: Any, ctx: DistContext | None = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (any picklable object)."""
    ctx = ctx or context()
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_concat(arrays: Sequence[np.ndarray], ctx: DistContext | None = None) -> tuple[np.ndarray, ...]:
    """Every rank's ``arrays`` concatenated in rank order, on every rank."""
    ctx = ctx or context()
    if not ctx.enabled:
        return tuple(arrays)
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, [np.asarray(a) for a in arrays])
    # a rank with nothing to contribute (fewer rows than ranks) sends (0, ...) arrays of any width
    return tuple(np.concatenate([p[i] for p in parts if len(p[i])] or [parts[0][i]]) for i in range(len(arrays)))


def _device() -> torch.device:
    """Where collective tensors live: the rank's GPU under nccl, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def reduce_min(value: int, ctx: DistContext | None = None) -> int:
    ctx = ctx or context()
    if not ctx.enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_float(value: float, ctx: DistContext | None = None) -> float:
    """Rank 0's ``value`` on every rank, as one float64 tensor (no pickling: cheap enough per step)."""
    ctx = ctx or context()
    if not ctx.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.broadcast(t, src=0)
    return float(t.item())


def reduce_sum(values: Sequence[float], ctx: DistContext | None = None) -> list[float]:
    ctx = ctx or context()
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def average_gradients(params: Sequence[torch.nn.Parameter], ctx: DistContext | None = None) -> None:
    """Average the gradients of ``params`` over ranks. For parameters outside the DDP-wrapped
    model (e.g. a loss's learnt scale, created lazily on the first batch after the wrap)."""
    ctx = ctx or context()
    if not ctx.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)  # every rank must take part in the same all-reduces
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(ctx.world_size)


def sync_buffers(module: torch.nn.Module, ctx: DistContext | None = None, parameters: bool = False) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: DDP broadcasts them before
    each forward, so after an epoch's last step the ranks' copies differ by that step.
    ``parameters=True``: the parameters too (modules outside DDP, e.g. a loss)."""
    ctx = ctx or context()
    if not ctx.enabled:
        return
    tensors = list(module.buffers()) + (list(module.parameters()) if parameters else [])
    for t in tensors:
        dist.broadcast(t.data, src=0)


# --- data ----------------------------------------------------------------------------------------
def shard_positions(labels: Sequence[Any], rank: int, world_size: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of rank ``rank``'s disjoint, class-stratified share of ``labels``: each
    class's rows are shuffled (seeded) and dealt round-robin, so every rank gets ~1/N of every class
    and the shards together are every row exactly once."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    mine = []
    for c in sorted(set(y.tolist()), key=str):
        idx = np.flatnonzero(y == c)
        mine.append(rng.permutation(idx)[rank::world_size])
    return np.sort(np.concatenate(mine)) if mine else np.zeros(0, dtype=int)


def chunk(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous slice of ``range(n)`` (slices in rank order cover it once)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return range(int(bounds[rank]), int(bounds[rank + 1]))


def shard_of(dataset: Any) -> tuple[int, int] | None:
    """The ``(rank, world)`` shard a dataset (or a Subset of one) was cut to, if any."""
    while dataset is not None:
        shard = getattr(dataset, "shard", None)
        if shard is not None:
            return tuple(shard)
        dataset = getattr(dataset, "dataset", None)
    return None


# --- launching -----------------------------------------------------------------------------------
def restart_count() -> int:
    """How often torchrun has restarted this job's workers (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def launch(nproc: int, module_args: Sequence[str], *, module: str = "zoo.cli", max_restarts: int = 0) -> int:
    """Run ``python -m <module> <module_args>`` in ``nproc`` processes on this host with torchrun's
    own launcher (``torch.distributed.run``, in this process as the elastic agent); the exit code.

    The worker arguments are handed over after parsing torchrun's own: on its command line,
    argparse's prefix matching would take a worker's ``--nproc``/``--m...`` for torchrun options."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if int(nproc) < 2:
        raise ValueError(f"nproc must be >= 2 to launch torchrun, got {nproc}")
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={int(nproc)}",
                                         f"--max-restarts={int(max_restarts)}", "-m", module])
    args.training_script_args = [str(a) for a in module_args]
    for key, value in launcher_env(nproc).items():
        os.environ[key] = value
    try:
        run(args)
    except ChildFailedError as exc:
        log.error("torchrun: %s", exc.format_msg().strip().splitlines()[0] if exc.failures else exc)
        return 1
    return 0


def threads_per_process(nproc: int) -> int:
    """CPU threads each of ``nproc`` local processes should use (all cores shared, at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, int(nproc)))


def launcher_env(nproc: int) -> dict[str, str]:
    """The environment for torchrun's workers: OMP threads split between them (torchrun's own
    default of 1 would leave cores idle on a big CPU), this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))
    bindir = os.path.dirname(sys.executable)
    if shutil.which("python", path=bindir):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
