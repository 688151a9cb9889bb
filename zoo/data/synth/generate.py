"""``generate``: sample the cells, render them in worker processes, write PNGs, masks,
``cells.csv`` and ``synth.json``."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import config
from .render import png_bytes
from .sampling import (check_arguments, check_classes, class_counts, class_frequencies, neighbour_pool,
                       sample_cells, stages)
from .scene import SlideStyle, make_slides, render_patch

MANIFEST = "cells.csv"
INFO = "synth.json"
_OUTPUTS = ("images", "masks", MANIFEST, INFO)


def _prepare_out(out: Path) -> None:
    """Reuse a folder only if it is empty or holds an earlier synthetic set (which is replaced)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / INFO).is_file():
            raise ValueError(f"out_dir {out} is not empty and holds no {INFO} (not an earlier synthetic "
                             "set): choose an empty or new folder")
        for name in _OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _render_chunk(job: tuple) -> list[dict]:
    """Worker: render and write a chunk of cells; return their measurements."""
    out, rows, slides, img_size, seed, difficulty, pool = job
    out = Path(out)
    results = []
    for row in rows:
        rgb, mask, stats = render_patch(row, slides[row["group"]], img_size, seed, difficulty, pool)
        (out / row["image"]).write_bytes(png_bytes(rgb))
        (out / row["mask"]).write_bytes(png_bytes(mask))
        results.append(dict(cell_index=row["cell_index"], **stats))
    return results


def generate(out_dir: str | Path, n_cells: int = 4560, img_size: int = 96, seed: int = 0,
             classes: Sequence[str] | None = None, density: float = 0.5, n_slides: int = 12,
             difficulty: float = 1.0, workers: int = 2, progress: bool = True) -> Path:
    """Write a synthetic bone-marrow dataset to ``out_dir`` and return its path.

    Layout: ``images/<class>/<class>_<nnnnn>.png``, ``masks/<class>/<class>_<nnnnn>.png`` (central
    cell only: nucleus 255, cytoplasm 128, background 0), ``cells.csv`` (image, source_label,
    group, mask, maturity, lineage, density, measurements) and ``synth.json`` (parameters, version,
    class counts, slide styles). The bytes depend only on the arguments other than ``workers`` and
    ``progress``: every cell has its own random generator seeded from (seed, cell index).

    ``density`` in [0, 1] scales surrounding red cells, platelets and partial neighbour cells
    (0: the central cell alone); ``difficulty`` scales the fuzziness of the stage borders and the
    per-cell scatter (0 crisp, 1 default, larger harder).
    """
    check_arguments(n_cells=n_cells, img_size=img_size, seed=seed, density=density, n_slides=n_slides,
                    difficulty=difficulty, workers=workers)
    classes = check_classes(classes)
    out = Path(out_dir)
    cells = sample_cells(n_cells, seed, classes, n_slides, difficulty, density)
    _prepare_out(out)
    for cid in classes:
        (out / "images" / cid).mkdir(parents=True, exist_ok=True)
        (out / "masks" / cid).mkdir(parents=True, exist_ok=True)

    slide_list = make_slides(seed, n_slides)
    slides: dict[str, SlideStyle] = {s.slide: s for s in slide_list}
    pool = neighbour_pool(difficulty)
    rows = cells[["cell_index", "image", "mask", "group", "lineage", "maturity", "density"]].to_dict("records")
    chunk = int(np.clip(n_cells // (max(workers, 1) * 16), 8, 64))
    jobs = [(str(out), rows[i:i + chunk], slides, int(img_size), int(seed), float(difficulty), pool)
            for i in range(0, n_cells, chunk)]
    measured: list[dict] = []
    with tqdm(total=n_cells, desc="synth cells", unit="cell", disable=not progress) as bar:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                measured += _render_chunk(job)
                bar.update(len(job[1]))
        else:
            # fork where the OS has it: workers start instantly and scripts calling generate()
            # need no `if __name__ == "__main__"` guard. Safe even under a torch-importing
            # parent because the workers only run numpy/scipy/PIL code, which starts no threads.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(min(workers, len(jobs))) as procs:
                for res in procs.imap(_render_chunk, jobs):
                    measured += res
                    bar.update(len(res))

    table = cells.merge(pd.DataFrame(measured), on="cell_index", how="left", validate="one_to_one")
    table = table.drop(columns="cell_index")
    table.to_csv(out / MANIFEST, index=False, float_format="%.6g", lineterminator="\n")
    info = dict(
        generator="zoo.data.synth",
        version=config.VERSION,
        params=dict(n_cells=int(n_cells), img_size=int(img_size), seed=int(seed), classes=list(classes),
                    density=float(density), n_slides=int(n_slides), difficulty=float(difficulty)),
        field_um=config.FIELD_UM,
        border_scale=config.BORDER_SCALE * float(difficulty),
        class_frequencies={c: round(f, 6) for c, f in class_frequencies(classes).items()},
        class_counts=class_counts(n_cells, classes),
        stages={c: dict(lineage=s.lineage, maturity_lo=s.lo, maturity_hi=s.hi) for c, s in stages(classes).items()},
        slides=[s.to_dict() for s in slide_list],
        files=dict(manifest=MANIFEST, images="images/<class>/<class>_<nnnnn>.png",
                   masks="masks/<class>/<class>_<nnnnn>.png (0 background, 128 cytoplasm, 255 nucleus)"),
        columns=dict(
            image="PNG path relative to this folder", source_label="canonical class id",
            group="simulated slide (stain, light, focus)", mask="mask path relative to this folder",
            maturity="true maturity in [0, 1] within the lineage (whole [0, 1] for single-class lineages)",
            lineage="ontology lineage", density="effective red-cell density of the slide area",
            diameter_um="cell diameter", nucleus_area="nucleus pixels", cell_area="cell pixels",
            nc_ratio="nucleus / cell area", n_lobes="nuclear lobes (1 = unsegmented)",
            n_red_cells="red cells drawn", n_neighbours="partial neighbour cells drawn"),
    )
    (out / INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out
