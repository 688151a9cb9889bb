"""What a registered version was trained as and how well it scored, in the lines the quickstart
prints: read back from the registry and the run, not from the training log."""

from __future__ import annotations

#: Below this many epochs a budgeted run is told how to train without the budget. On 2 cores the
#: quickstart's 4.1 minutes hold 18-20 epochs where the CPU has native bf16, 6 in float32 (README).
FEW_EPOCHS = 12


def version_summary(client, name: str, version: int | str, untimed_command: str | None = None) -> list[str]:
    """Lines on version ``version`` of registered model ``name``: its aliases and run, the test
    metrics, the best and the last epoch, the precision, whether the time budget stopped it and,
    when that left fewer than :data:`FEW_EPOCHS` epochs, how to train without the budget
    (``untimed_command`` if given, else the parameter to set)."""
    mv = client.get_model_version(name, str(version))
    run = client.get_run(mv.run_id)
    m, p = run.data.metrics, run.data.params
    # The last epoch's step, not the number of entries: a resumed run logs its interrupted epoch again.
    epochs = max((h.step for h in client.get_metric_history(mv.run_id, "epoch_seconds")), default=0)
    precision = run.data.tags.get("precision", "unknown precision")
    budget = bool(m.get("stopped_on_budget"))
    aliases = ", ".join(f"@{a}" for a in (mv.aliases or [])) or "no alias"
    nan = float("nan")
    lines = [
        f"registered {name} version {mv.version} ({aliases}), run {mv.run_id}",
        f"test on fold {p.get('fold', '?')} of {p.get('dataset', '?')}: macro-F {m.get('test_macro_f1', nan):.3f} "
        f"strict / {m.get('test_macro_f1_tolerant', nan):.3f} tolerant, MCS {m.get('test_mcs', nan):.3f}, "
        f"best epoch {int(m.get('best_epoch', 0))} of {epochs} ({precision}"
        + (", stopped on the time budget)" if budget else ")"),
    ]
    if budget and epochs < FEW_EPOCHS:
        how = untimed_command or "set budget=none (and epochs, e.g. 30)"
        lines.append(f"only {epochs} epochs fit in the time budget on this machine ({precision}); for the "
                     f"converged model, train without it: {how}")
    return lines


__all__ = ["FEW_EPOCHS", "version_summary"]
