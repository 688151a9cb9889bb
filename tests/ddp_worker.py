"""One rank of the Trainer-level DDP test (tests/test_ddp.py), started by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/ddp_worker.py OUT

Trains a small timm encoder on the tiny prepared dataset ($ZOO_HOME) with the real data path
(make_loaders with this rank's shard) for 2 epochs, then writes what the test compares:
``OUT/rank<r>.npz`` with the final weights, the gathered validation embeddings, a local
(non-distributed) embedding of the whole validation set, this rank's training rows and history.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(out: Path) -> None:
    from zoo.data.datasets import make_loaders
    from zoo.losses import create_loss
    from zoo.models import Encoder
    from zoo.train import Trainer, distributed

    ctx = distributed.ensure()
    torch.manual_seed(0)
    loaders = make_loaders("tiny", 0, 32, 8, num_workers=0, seed=0, sampler="m_per_class", m_per_class=4,
                           shard=ctx.shard)
    model = Encoder("resnet10t", embedding_dim=16)
    trainer = Trainer(model, create_loss("triplet"), loaders["train"], loaders["val"], epochs=2, patience=None,
                      progress=False, precision="fp32", seed=0)
    trainer.fit()
    gathered, gathered_y = trainer.embed(loaders["val"])
    local, local_y = trainer._embed_local(loaders["val"], "local")
    train_rows = [str(p) for p in loaders["train"].dataset.paths]
    weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(out / f"rank{ctx.rank}.npz", gathered=gathered, gathered_y=gathered_y, local=local, local_y=local_y,
             **{f"w:{k}": v for k, v in weights.items()})
    (out / f"rank{ctx.rank}.json").write_text(json.dumps({
        "train_rows": train_rows, "shard": list(ctx.shard or ()),
        "history": [{k: v for k, v in row.items() if "seconds" not in k and "per_s" not in k}
                    for row in trainer.history]}))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
