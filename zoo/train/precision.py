"""Numeric precision of training and inference: ``auto | fp32 | bf16``.

* CUDA: ``auto`` is float16 autocast with a GradScaler (AMP, as before); ``bf16`` is bfloat16
  autocast (no scaler needed) where the GPU supports it; ``fp32`` is plain float32.
* CPU: ``bf16`` is ``torch.autocast("cpu", dtype=torch.bfloat16)``. It only pays off on CPUs with
  native bfloat16 arithmetic (AVX-512 BF16 or AMX), and even there not for every backbone and image
  size (measured on one such CPU: resnet18 at 64 px trained 1.77x faster, at 96 px no faster). So
  ``auto`` takes bf16 only when the CPU has the instructions *and* a short probe (a few training
  steps of this model at this size, both ways, interleaved) finds it faster; the verdict is cached
  on disk per CPU, torch version, model, input size, batch size and thread count.
  ``bf16`` requested on a CPU without the instructions fails with a message naming the fix.
* Elsewhere (MPS): float32.

Embeddings leave the model as float32 (``.float()``) before the loss, the SVM stage and the
metrics, whatever the autocast dtype.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 must beat fp32 by this factor in the probe: within it, timing noise on a shared machine
# decides, and fp32 is the safer numeric choice.
MIN_SPEEDUP = 1.10
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The resolved choice: ``name`` (fp32 | bf16 | fp16), the autocast dtype (None = no autocast),
    whether a GradScaler is needed (fp16 only), and why (logged and tagged on the run)."""

    name: str
    dtype: torch.dtype | None
    scaler: bool
    reason: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=self.dtype or torch.float32, enabled=self.enabled)


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_supports_bf16() -> bool:
    """Native bfloat16 arithmetic (AVX-512 BF16 or AMX-BF16). oneDNN also *emulates* bf16 on plain
    AVX-512, which is slower than fp32, so torch's own mkldnn check is not enough."""
    return any(f in cpu_flags() for f in CPU_BF16_FLAGS)


def resolve_precision(
    precision: str,
    device: torch.device,
    *,
    model: nn.Module | None = None,
    input_shape: tuple[int, ...] | None = None,
    cpu_bf16: bool | None = None,
    probe: Callable[[], float] | None = None,
    cache_dir: str | Path | None = None,
) -> Precision:
    """Turn ``precision`` (auto | fp32 | bf16) into a :class:`Precision` for ``device``.

    ``cpu_bf16``: the CPU capability (default :func:`cpu_supports_bf16`; tests inject it).
    For ``auto`` on a capable CPU, ``probe() -> speedup`` decides (default: :func:`probe_speedup`
    on ``model`` with inputs of ``input_shape`` (N, C, H, W), cached); no model or shape -> fp32."""
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if text == "fp32":
        return Precision("fp32", None, False, "requested")
    if device.type == "cuda":
        if text == "bf16":
            if not torch.cuda.is_bf16_supported():
                raise ValueError(f"precision='bf16' but {torch.cuda.get_device_name(device)} has no bfloat16 "
                                 "support; use precision=auto (float16 AMP) or fp32")
            return Precision("bf16", torch.bfloat16, False, "requested")
        return Precision("fp16", torch.float16, True, "auto: AMP on CUDA")
    if device.type != "cpu":
        if text == "bf16":
            raise ValueError(f"precision='bf16' is supported on CPU and CUDA, not on {device.type}; "
                             "use precision=auto or fp32")
        return Precision("fp32", None, False, f"auto: float32 on {device.type}")

    capable = cpu_supports_bf16() if cpu_bf16 is None else bool(cpu_bf16)
    if text == "bf16":
        if not capable:
            raise ValueError(
                f"precision='bf16' needs a CPU with native bfloat16 arithmetic ({' or '.join(CPU_BF16_FLAGS)}); "
                f"this CPU ({cpu_name()}) has neither, where bf16 is emulated and slower than float32. "
                "Use precision=auto (picks float32 here) or precision=fp32")
        return Precision("bf16", torch.bfloat16, False, "requested")
    if not capable:
        return Precision("fp32", None, False, "auto: CPU without AVX-512 BF16/AMX")
    if probe is None:
        if model is None or input_shape is None:
            return Precision("fp32", None, False, "auto: no model/input size to probe bf16 with")
        probe = lambda: cached_probe(model, input_shape, cache_dir=cache_dir)  # noqa: E731
    speedup = float(probe())
    if speedup >= MIN_SPEEDUP:
        return Precision("bf16", torch.bfloat16, False, f"auto: bf16 measured {speedup:.2f}x faster")
    return Precision("fp32", None, False, f"auto: bf16 measured {speedup:.2f}x (< {MIN_SPEEDUP}x), float32")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_file(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache_dir = Path(base) / "marrow-zoo"
    return Path(cache_dir) / "precision_probe.json"


def _probe_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    arch = getattr(model, "backbone_name", None) or type(model).__name__
    parts = [cpu_name(), torch.__version__, str(arch), str(n_params), "x".join(map(str, input_shape)),
             str(torch.get_num_threads())]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16] + f" {arch} {'x'.join(map(str, input_shape))}"


def cached_probe(model: nn.Module, input_shape: tuple[int, ...], *, cache_dir: str | Path | None = None) -> float:
    """:func:`probe_speedup`, remembered on disk (a probe costs seconds; a run starts often)."""
    path = _cache_file(cache_dir)
    key = _probe_key(model, input_shape)
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return float(cache[key])
    speedup = probe_speedup(model, input_shape)
    cache[key] = speedup
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    except OSError as exc:  # a read-only home must not stop training
        log.debug("could not cache the precision probe in %s: %s", path, exc)
    return speedup


def _floating_tensors(out):
    """Every floating tensor of a model's output: a tensor, or tuples, lists, dicts and dataclasses
    of them (an autoencoder returns its reconstruction, mean and log-variance)."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point():
            yield out
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _floating_tensors(getattr(out, f.name))
    elif isinstance(out, dict):
        for v in out.values():
            yield from _floating_tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _floating_tensors(v)


def _probe_loss(out) -> torch.Tensor:
    """A scalar that depends on every floating tensor of a model's output."""
    parts = [t.float().square().mean() for t in _floating_tensors(out)]
    if not parts:
        raise TypeError(f"the precision probe cannot read a loss from a model output of type {type(out).__name__}")
    return torch.stack(parts).sum()


def probe_speedup(model: nn.Module, input_shape: tuple[int, ...], steps: int = 3, rounds: int = 3) -> float:
    """fp32 time / bf16 time of a training step (forward, backward, SGD update) of a *copy* of
    ``model`` on random inputs, on CPU. Rounds alternate fp32 and bf16 so that a neighbour's load
    hits both alike; the median of the per-round ratios is returned. Uses its own RNG (the global
    one, which seeds the model and the data order, is left untouched)."""
    probe_model = copy.deepcopy(model).cpu().train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*input_shape, generator=gen)
    opt = torch.optim.SGD([p for p in probe_model.parameters() if p.requires_grad], lr=1e-6)

    def run(dtype: torch.dtype | None) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = probe_model(x)
            opt.zero_grad(set_to_none=True)
            _probe_loss(out).backward()
            opt.step()
        return time.perf_counter() - start

    # fork_rng: dropout in the copy draws from the global RNG, which must not move.
    with torch.random.fork_rng(devices=[]):
        run(None), run(torch.bfloat16)  # warm-up: oneDNN primitive creation for both
        ratios = [run(None) / run(torch.bfloat16) for _ in range(rounds)]
    speedup = statistics.median(ratios)
    log.info("precision probe (%s, input %s): bf16 %.2fx fp32", type(model).__name__, input_shape, speedup)
    return speedup
