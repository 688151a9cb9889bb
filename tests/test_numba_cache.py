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
