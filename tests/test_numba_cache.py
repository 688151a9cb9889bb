"""numba's compiled umap/pynndescent kernels go to one writable folder, shared by every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = ("import json, os, sys; {pre}from zoo.numba_cache import use_disk_cache; use_disk_cache(); "
         "print(json.dumps(os.environ.get('NUMBA_CACHE_DIR')))")


def probe(tmp_path, pre="", **env):
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    base.update(XDG_CACHE_HOME=str(tmp_path / "cache"), **env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], env=base, capture_output=True,
                         text=True, check=True, cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cache_folder_is_created_under_the_users_cache_dir(tmp_path):
    got = probe(tmp_path)
    assert got == str(tmp_path / "cache" / "marrow-zoo" / "numba")
    assert (tmp_path / "cache" / "marrow-zoo" / "numba").is_dir()


def test_a_users_own_setting_wins(tmp_path):
    assert probe(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert not (tmp_path / "cache").exists()


def test_nothing_is_set_once_numba_is_imported(tmp_path):
    # numba reads the variable at import: setting it afterwards would only mislead.
    assert probe(tmp_path, pre="import numba; ") is None


# umap.distances.euclidean is jitted without cache=True and compiles in well under a second.
KERNEL = ("import json, numpy as np; from zoo.numba_cache import import_umap, cache_kernels; import_umap(); "
          "from umap.distances import euclidean; d = euclidean(np.ones(3), np.zeros(3)); "
          "print(json.dumps({'d': float(d), 'hits': sum(euclidean.stats.cache_hits.values()), "
          "'misses': sum(euclidean.stats.cache_misses.values()), 'again': cache_kernels(('umap', 'pynndescent'))}))")


def run_kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", KERNEL], env=env, capture_output=True, text=True, check=True,
                         cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_umap_kernels_without_cache_true_compile_once_per_machine(tmp_path):
    first = run_kernel(tmp_path)
    assert first["d"] == 3 ** 0.5
    assert (first["hits"], first["misses"]) == (0, 1)  # compiled here, and written to the cache
    assert first["again"] == 0  # import_umap already turned every kernel on
    cached = list((tmp_path / "cache" / "marrow-zoo" / "numba").rglob("distances.euclidean-*.nbi"))
    assert cached, "the compiled kernel was not written to the zoo's numba cache"
    second = run_kernel(tmp_path)  # a new process loads it instead of compiling
    assert (second["hits"], second["misses"]) == (1, 0)
    assert second["d"] == first["d"]
