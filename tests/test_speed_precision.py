"""Precision selection (auto | fp32 | bf16): the CPU capability is injected, never faked in torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.evaluate import SVMStage
from zoo.losses import create_loss
from zoo.models import create_encoder
from zoo.train import Trainer, seed_everything
from zoo.train.precision import cached_probe, cpu_supports_bf16, resolve_precision

CPU = torch.device("cpu")


def test_bf16_on_a_cpu_without_support_fails_with_a_clear_message():
    with pytest.raises(ValueError, match=r"precision='bf16' needs a CPU with native bfloat16.*precision=auto"):
        resolve_precision("bf16", CPU, cpu_bf16=False)


def test_auto_follows_capability_and_probe():
    assert resolve_precision("fp32", CPU, cpu_bf16=True).dtype is None
    assert resolve_precision("auto", CPU, cpu_bf16=False).name == "fp32"
    # capable CPU: the measured speed-up decides, with a margin against timing noise
    assert resolve_precision("auto", CPU, cpu_bf16=True, probe=lambda: 1.6).dtype is torch.bfloat16
    assert resolve_precision("auto", CPU, cpu_bf16=True, probe=lambda: 1.02).name == "fp32"
    assert resolve_precision("bf16", CPU, cpu_bf16=True).dtype is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("half", CPU)


def test_probe_is_cached_and_leaves_the_global_rng_alone(tmp_path):
    # a conv net with dropout: its training-mode forward draws from the global RNG
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = cached_probe(model, (4, 3, 16, 16), cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), state)
    assert first > 0 and (tmp_path / "precision_probe.json").is_file()
    assert cached_probe(model, (4, 3, 16, 16), cache_dir=tmp_path) == first  # read back, not re-measured


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16 (AVX-512 BF16/AMX)")
def test_bf16_training_gives_finite_results_and_float32_embeddings():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(24) % 3
    x = torch.rand(24, 3, 32, 32, generator=g) * 0.4  # 32 px: see the trainer on oneDNN at 16 px
    x[torch.arange(24), y] += 0.6
    data = TensorDataset(x, y)
    seed_everything(0)
    trainer = Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                      DataLoader(data, batch_size=12, shuffle=True), DataLoader(data, batch_size=24),
                      train_eval_loader=DataLoader(data, batch_size=24), epochs=2, patience=None,
                      svm=SVMStage(gammas=("scale",), Cs=(1.0,), cv=2), progress=False, precision="bf16")
    result = trainer.fit()
    assert result.precision == "bf16"
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_macro_f1"]) for r in result.history)
    emb, _ = trainer.embed(DataLoader(data, batch_size=24))
    assert emb.dtype.name == "float32"


def test_the_probe_reads_a_loss_from_any_model_output():
    """auto precision probes the family's own model: an autoencoder returns a dataclass of
    reconstruction, mean and log-variance, not a tensor; every floating tensor in it counts."""
    from dataclasses import dataclass

    from zoo.train.precision import _probe_loss

    @dataclass
    class Out:
        recon: torch.Tensor
        mu: torch.Tensor
        n: int

    a, b = torch.full((2, 3), 2.0, requires_grad=True), torch.ones(2, 4, requires_grad=True)
    loss = _probe_loss(Out(a, b, 3))
    assert float(loss.detach()) == pytest.approx(4.0 + 1.0)
    loss.backward()
    assert a.grad is not None and b.grad is not None
    assert float(_probe_loss((a, {"m": b})).detach()) == pytest.approx(5.0)
    with pytest.raises(TypeError, match="model output of type str"):
        _probe_loss("logits")
