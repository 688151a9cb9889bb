"""Batch SOM (zoo.som) vs MiniSom (the thesis's reference) vs torchsom 1.3, side by side.

All three see the same data; ours and MiniSom's batch algorithm (``train_batch_offline``) also
start from the same PCA prototypes and follow the same Gaussian/asymptotic schedule, so their
errors are directly comparable. MiniSom's classic stochastic ``train`` (what the thesis used) is run
for one pass over the data. torchsom is a mini-batch online SOM with its own init.

    python benchmarks/som_vs_minisom.py                       # 60,000 x 50, maps 50x50 and 100x100
    python benchmarks/som_vs_minisom.py --n 10000 --maps 50 --minisom-epochs 1 --threads 1   # busy machine

Prints per method: seconds, quantization error (QE), topographic error (TE) and the time ratio
to ours. Needs ``pip install minisom torchsom`` (benchmark dependencies only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_data(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """A mixture of 15 anisotropic Gaussians (like 15 cell classes in a 50-d latent space),
    standardized as the thesis did before its SOM."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (15, dim))
    k = rng.integers(0, 15, n)
    x = centers[k] + rng.normal(0, 1, (n, dim)) * rng.uniform(0.5, 1.5, (15, dim))[k]
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def errors(weights: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """QE and TE of any prototype grid, computed one way for all methods (chunked; MiniSom's own
    ``quantization_error``/``topographic_error`` build the full n x nodes matrix: 1.2 GB here).
    The definitions are MiniSom's (mean BMU distance; 8-neighbourhood rule), see tests/test_som.py."""
    from zoo.som import BatchSOM

    probe = BatchSOM(weights.shape[0], weights.shape[1], device="cpu")
    probe.weights_, probe.n_features_in_ = np.asarray(weights, dtype=np.float32), weights.shape[2]
    return probe.quantization_error(x), probe.topographic_error(x)


def run(args) -> None:
    from minisom import MiniSom

    from zoo.som import BatchSOM

    if args.threads:
        # On a shared, oversubscribed machine a 2-thread torch op waits for its slowest thread
        # (measured: 4-5x slower than 1 thread at load 30 on 2 cores); MiniSom's per-sample numpy
        # work is single-threaded, so --threads 1 also puts both on the same footing.
        import torch

        torch.set_num_threads(args.threads)
    x = make_data(args.n, args.dim)
    x64 = x.astype(np.float64)
    print(f"data {x.shape}, epochs {args.epochs}, torch threads {__import__('torch').get_num_threads()}")
    for side in args.maps:
        sigma = side / 2.0
        print(f"\n== map {side}x{side}, sigma0 {sigma}")
        ours = BatchSOM(side, side, epochs=args.epochs, sigma=sigma, learning_rate=1.0, decay="asymptotic",
                        init="pca", device=args.device)
        init = ours.initial_weights(x)
        t0 = time.perf_counter()
        ours.fit(x)
        t_ours = time.perf_counter() - t0
        qe_ours, te_ours = errors(ours.weights_, x)
        rows = [("zoo.som BatchSOM, MiniSom's asymptotic schedule", t_ours, qe_ours, te_ours, args.epochs)]
        # our default schedule: sigma decays exponentially to 0.5 (Kohonen: shrink to ~1 node)
        t0 = time.perf_counter()
        default = BatchSOM(side, side, epochs=args.epochs, sigma=sigma, init="pca", device=args.device).fit(x)
        t_def = time.perf_counter() - t0
        qe_def, te_def = errors(default.weights_, x)
        rows.append(("zoo.som BatchSOM, default (exp. decay to 0.5)", t_def, qe_def, te_def, args.epochs))

        # same algorithm, data, init and schedule in MiniSom; on a subset of epochs if asked,
        # with the time scaled to the full count (it is linear in epochs: one pass per epoch)
        ms = MiniSom(side, side, args.dim, sigma=sigma, learning_rate=1.0, neighborhood_function="gaussian",
                     decay_function="asymptotic_decay", sigma_decay_function="asymptotic_decay")
        ms._weights = init.astype(np.float64).copy()
        ep = args.minisom_epochs or args.epochs
        t0 = time.perf_counter()
        ms.train_batch_offline(x64, ep)
        t_ms = (time.perf_counter() - t0) * args.epochs / ep
        qe_ms, te_ms = errors(ms._weights, x) if ep == args.epochs else (float("nan"), float("nan"))
        rows.append((f"MiniSom train_batch_offline{'' if ep == args.epochs else f' ({ep} ep, time x{args.epochs / ep:.1f})'}",
                     t_ms, qe_ms, te_ms, args.epochs))

        ms2 = MiniSom(side, side, args.dim, sigma=sigma, learning_rate=0.5, neighborhood_function="gaussian",
                      random_seed=0)
        ms2._weights = init.astype(np.float64).copy()
        iters = args.stochastic_iterations or len(x)
        t0 = time.perf_counter()
        ms2.train(x64, iters, random_order=True)
        rows.append((f"MiniSom train (stochastic, {iters} it)", time.perf_counter() - t0,
                     *errors(ms2._weights, x), iters / len(x)))

        t_sto = rows[-1][1]
        if not args.skip_torchsom and side in args.torchsom_maps:
            import torch
            from torchsom import SOM

            ts = SOM(side, side, args.dim, epochs=args.epochs, batch_size=args.torchsom_batch, sigma=sigma,
                     learning_rate=0.5, initialization_mode="pca", device="cuda" if args.device == "cuda" else "cpu")
            xt = torch.from_numpy(x)
            t0 = time.perf_counter()
            ts.initialize_weights(xt, mode="pca")
            ts.fit(xt, verbose=False)
            t_ts = time.perf_counter() - t0
            rows.append((f"torchsom 1.3 SOM (mini-batch {args.torchsom_batch})", t_ts,
                         *errors(ts.weights.detach().cpu().numpy(), x), args.epochs))

        print(f"{'method':55s} {'seconds':>9s} {'QE':>8s} {'TE':>7s} {'epochs':>7s} {'time/ours':>10s}")
        for name, t, qe, te, e in rows:
            print(f"{name:55s} {t:9.2f} {qe:8.4f} {te:7.4f} {e:7.2f} {t / t_ours:10.1f}")
        print(f"same algorithm, init and schedule: MiniSom batch / ours = {t_ms / t_ours:.1f}x time, "
              f"QE ours / MiniSom = {qe_ours / qe_ms:.4f}")
        print(f"ours (default) vs MiniSom stochastic: {t_sto / t_def:.1f}x time, QE {qe_def:.4f} vs {rows[3][2]:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--dim", type=int, default=50)
    p.add_argument("--maps", type=int, nargs="+", default=[50, 100], help="square map sides")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minisom-epochs", type=int, default=0,
                   help="run MiniSom's batch algorithm for only this many epochs and scale its time "
                        "(its errors are then not reported); 0 = all")
    p.add_argument("--stochastic-iterations", type=int, default=0, help="MiniSom train iterations (0 = N)")
    p.add_argument("--torchsom-batch", type=int, default=256)
    p.add_argument("--torchsom-maps", type=int, nargs="*", default=[50], help="map sides torchsom runs on (slow)")
    p.add_argument("--skip-torchsom", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    run(p.parse_args())


if __name__ == "__main__":
    main()
