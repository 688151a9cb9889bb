"""Training: one Trainer with callbacks, early stopping, checkpoints and resume.

```python
from zoo.train import Trainer, Callback, seed_everything
seed_everything(0)                      # before building the model: reproducible init
trainer = Trainer(encoder, loss, train_loader, val_loader, epochs=100, patience=10,
                  train_eval_loader=train_eval_loader, classes=classes, checkpoint_dir="ckpt",
                  resume=True, logger=mlflow_logger, extra={"mlflow_run_id": run_id})
result = trainer.fit()                  # best weights loaded; result.svm = SVM at the best epoch
```
"""

from .callbacks import Callback, LambdaCallback
from .checkpoint import checkpoint_summary, last_checkpoint, read_extra
from .device import resolve_amp, resolve_device
from .early_stopping import EarlyStopping
from .guard import NonFiniteLossError
from .loggers import MetricsLogger, NullLogger
from .schedulers import SCHEDULERS
from .seeding import make_generator, seed_everything, worker_init_fn
from .trainer import FitResult, Trainer

__all__ = [
    "Callback", "EarlyStopping", "FitResult", "LambdaCallback", "MetricsLogger", "NonFiniteLossError",
    "NullLogger", "SCHEDULERS", "Trainer", "checkpoint_summary", "last_checkpoint", "make_generator",
    "read_extra", "resolve_amp", "resolve_device", "seed_everything", "worker_init_fn",
]
