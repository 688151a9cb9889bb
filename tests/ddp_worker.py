"""One rank of the Trainer-level DDP test (tests/test_ddp.py), started by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/ddp_worker.py OUT [budget]

Trains a small timm encoder on the tiny prepared dataset ($ZOO_HOME) with the real data path
(make_loaders with this rank's shard) for 2 epochs, then writes what the test compares:
``OUT/rank<r>.npz`` with the final weights, the gathered validation embeddings, a local
(non-distributed) embedding of the whole validation set, this rank's training rows and history.

With ``budget``: up to 10 epochs under a time budget on a clock of the test's that moves 10 s per
batch on rank 0 and 1 s on rank 1, sized so that rank 0's clock ends the run with a shortened
third epoch of half an epoch's steps. Rank 1's clock alone would train all 10 epochs: the ranks
agree only if rank 0's decisions (stop, and how many steps the last epoch takes) reach every rank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def main(out: Path, budget: bool = False) -> None:
    from zoo.data.datasets import make_loaders
    from zoo.losses import create_loss
    from zoo.models import Encoder
    from zoo.train import Callback, Trainer, distributed
    from zoo.train.budget import TimeBudget

    ctx = distributed.ensure()
    torch.manual_seed(0)
    # budget: shuffled batches of 2 give each rank's shard (6 images) 3 steps an epoch, so a part of
    # one can fit (the m-per-class batches of 8 make it one step)
    sampling = {"sampler": None} if budget else {"sampler": "m_per_class", "m_per_class": 4}
    loaders = make_loaders("tiny", 0, 32, 2 if budget else 8, num_workers=0, seed=0, shard=ctx.shard, **sampling)
    model = Encoder("resnet10t", embedding_dim=16)
    extra = {}
    if budget:
        clock, tick = Clock(), 10.0 if ctx.rank == 0 else 1.0
        steps = distributed.reduce_min(len(loaders["train"]), ctx)

        class Tick(Callback):
            def on_batch_end(self, trainer, epoch, batch, loss):
                clock.now += tick

        # 2 whole epochs, then half an epoch's steps (and a validation that costs nothing on this clock)
        seconds = (2 * steps + steps // 2 + 0.5) * 10.0
        extra = {"budget": TimeBudget(seconds / 60, clock=clock, last_epoch_min=0.2), "callbacks": [Tick()]}
    trainer = Trainer(model, create_loss("triplet"), loaders["train"], loaders["val"], epochs=10 if budget else 2,
                      patience=None, progress=False, precision="fp32", seed=0, **extra)
    trainer.fit()
    gathered, gathered_y = trainer.embed(loaders["val"])
    local, local_y = trainer._embed_local(loaders["val"], "local")
    train_rows = [str(p) for p in loaders["train"].dataset.paths]
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(out / f"rank{ctx.rank}.npz", gathered=gathered, gathered_y=gathered_y, local=local, local_y=local_y,
             **{f"w:{k}": v for k, v in weights.items()})
    (out / f"rank{ctx.rank}.json").write_text(json.dumps({
        "train_rows": train_rows, "shard": list(ctx.shard or ()), "global_step": trainer.global_step,
        "steps_per_epoch": len(loaders["train"]),
        "history": [{k: v for k, v in row.items() if "seconds" not in k and "per_s" not in k}
                    for row in trainer.history]}))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), budget=sys.argv[2:] == ["budget"])
