"""One call from a dataset folder to a clean, deduplicated, split, versioned prepared dataset.

``read -> drop non-images -> map labels -> decode/convert/hash -> dedup -> folds -> write``::

    from zoo.data.ingest import ingest
    ds = ingest("/data/PBC", name="pbc", reader="pbc")     # -> PreparedDataset

writes ``data/prepared/<name>/``: ``manifest.parquet``, ``folds.csv`` (image, fold),
``dataset.json``, ``report.csv`` (every dropped / converted / flagged file and why) and
``report.txt`` (counts per class before and after), and prints the report table.
The source folder is only ever read.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from zoo.paths import prepared_dir, project_dir

from . import clean
from .dedup import CONFIRM, NEAR_DUPLICATE, REVIEW, find_duplicates, thumbnail
from .folds import DEFAULT_FOLDS, assign_folds
from .manifest import COLUMNS, manifest_digest, resolve_path, write_manifest
from .prepared import FOLDS, INFO, MANIFEST, REPORT_CSV, REPORT_TXT, PreparedDataset
from .readers import READERS, check_reader_output

REPORT_COLUMNS = ["image", "source_label", "label", "action", "reason", "related"]
NOT_IMAGES = "(not an image / unlabelled)"


def ingest(
    source: str | Path,
    name: str,
    reader: str = "imagefolder",
    label_map: Mapping[str, str] | str | Path | None = None,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    out: str | Path | None = None,
    reader_options: Mapping[str, Any] | None = None,
    *,
    classes: list[str] | None = None,
    near_distance: int = NEAR_DUPLICATE,
    review_distance: int = REVIEW,
    confirm_distance: float | None = CONFIRM,
    workers: int | str = "auto",
    verbose: bool = True,
    timestamp: bool = True,
) -> PreparedDataset:
    """Prepare the dataset at ``source`` (read with ``READERS[reader]``) as ``name``.

    ``label_map``: dict or YAML file ``source_label: canonical_id`` overriding the ontology's
    aliases. ``classes``: keep only these canonical ids (the others are reported as excluded).
    ``near_distance``/``review_distance``: average-hash Hamming distances within a class at
    which an image is dropped as a near-duplicate / listed for review (-1 disables);
    ``confirm_distance``: pixel difference (0-255, 32 px thumbnails) a near-duplicate must also
    be within (None = the plain average-hash rule; zoo/data/dedup.py says why it confirms).
    ``out``: prepared folder (default ``data/prepared/<name>``). ``workers``: processes for
    decoding and hashing ('auto' = one per core for big datasets). ``timestamp=False`` writes
    ``created: null`` so that the output is byte-reproducible (the DVC prepare stages: DVC and
    git already record when).
    Unknown labels stop the ingest with the ontology's error, listing them and the fix.
    """
    from zoo import __version__
    from zoo.knowledge import load_ontology

    _check_name(name)
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {source}")
    out_dir = Path(out).expanduser().resolve() if out else prepared_dir(name)
    if out_dir == source or source in out_dir.parents:
        raise ValueError(f"the prepared folder {out_dir} must not lie inside the source {source}")
    _check_overwritable(out_dir)
    ont = load_ontology()

    read = READERS.get(reader)
    frame = check_reader_output(read(source, **dict(reader_options or {})), reader).set_index("image", drop=False)
    frame.index.name = None
    report: list[dict] = []
    listed = len(frame)

    # 1. cheap drops: hidden/system files, non-image extensions, missing and zero-size files.
    extensions = clean.image_extensions()
    reasons = {rel: clean.precheck(rel, source / rel, extensions) for rel in frame["image"]}
    unlabelled = frame["source_label"].isna()
    for rel, why in reasons.items():
        if why is None and unlabelled[rel]:
            reasons[rel] = "no class label from the dataset layout (file outside the class folders?)"
    gone = [rel for rel, why in reasons.items() if why]
    report += [_row(frame.loc[rel], None, clean.DROPPED, reasons[rel]) for rel in gone]
    frame = frame.drop(index=gone)
    frame["source_label"] = frame["source_label"].astype(str)

    # 2. labels: every distinct label at once, so the error lists all unknowns.
    dataset = READERS.meta(reader).get("dataset", reader)
    mapping = ont.map_labels(frame["source_label"], dataset=dataset, label_map=label_map)
    frame["label"] = frame["source_label"].map(mapping)
    # Files dropped above still count for their class folder when its label is known.
    for row in report:
        row["label"] = mapping.get(row["source_label"]) if isinstance(row["source_label"], str) else None
    before = pd.concat([frame["label"], pd.Series([r["label"] for r in report], dtype=object)]).value_counts()
    if classes is not None:
        unknown = [c for c in classes if c not in ont]
        if unknown:
            raise ValueError(f"classes: {unknown} are not canonical class ids (see zoo.knowledge)")
        excluded = ~frame["label"].isin(classes)
        report += [_row(r, r.label, clean.DROPPED, "class not selected (classes=...)") for r in frame[excluded].itertuples()]
        frame = frame[~excluded]
    if frame.empty:
        raise ValueError(f"no images left in {source} after removing non-image/unlabelled files"
                         + (" and classes not selected" if classes is not None else ""))

    # 3. decode, convert, hash (in parallel).
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tasks = [clean.Task(rel=r.image, path=str(source / r.image), prepared=str(tmp),
                            mask_rel=r.mask if isinstance(r.mask, str) else None,
                            mask_path=str(source / r.mask) if isinstance(r.mask, str) else None)
                 for r in frame.itertuples()]
        results = pd.DataFrame(clean.check_files(tasks, workers=workers, desc=f"{name}: checking images"))
        results = results.set_index("rel")
        results.index.name = None
        for rel, res in results.iterrows():
            src = frame.loc[rel]
            if res["status"] == clean.DROPPED:
                report.append(_row(src, src["label"], clean.DROPPED, res["reason"]))
            elif res["status"] == clean.CONVERTED:
                report.append(_row(src, src["label"], clean.CONVERTED, res["reason"], res["image"]))
            if res["mask_status"] in (clean.CONVERTED, clean.FLAGGED):
                report.append(_row(src, src["label"], res["mask_status"], res["mask_reason"],
                                   res["mask"] if isinstance(res["mask"], str) else src["mask"]))
        ok = results["status"] != clean.DROPPED
        frame = frame.loc[ok[ok].index]
        res_ok = results.loc[frame.index]
        frame = frame.assign(
            path_in_manifest=res_ok["image"], mask=res_ok["mask"], width=res_ok["width"].astype("int64"),
            height=res_ok["height"].astype("int64"), sha256=res_ok["sha256"], ahash=res_ok["ahash"])

        # 4. duplicates.
        paths = {idx: resolve_path(p, source, tmp) for idx, p in frame["path_in_manifest"].items()}
        findings = find_duplicates(frame[["image", "label", "sha256", "ahash"]], near=near_distance,
                                   review=review_distance, confirm=confirm_distance,
                                   thumbnail=lambda idx: thumbnail(paths[idx]))
        for f in findings:
            src = frame.loc[f.index]
            report.append(_row(src, src["label"], f.action, f.reason, f.related))
        frame = frame.drop(index=[f.index for f in findings if f.action == clean.DROPPED])
        if frame.empty:
            reasons = pd.Series([r["reason"] for r in report]).map(_reason_kind).value_counts()
            raise ValueError(f"no usable images left in {source}; dropped: "
                             + ", ".join(f"{n} {kind}" for kind, n in reasons.items()))

        # 5. folds, lineage, maturity.
        folds, how = assign_folds(frame["label"], frame["group"], n_folds=n_folds, seed=seed)
        frame["fold"] = folds
        frame["lineage"] = frame["label"].map(ont.lineage)
        onto_maturity = frame["label"].map(ont.maturity).astype("float64")
        frame["maturity"] = frame["maturity"].astype("float64").fillna(onto_maturity)
        frame["image"] = frame["path_in_manifest"]
        frame["group"] = frame["group"].map(lambda g: None if pd.isna(g) else str(g))
        manifest = frame[list(COLUMNS)].sort_values("image", kind="stable").reset_index(drop=True)

        # 6. write.
        write_manifest(manifest, tmp / MANIFEST)
        manifest[["image", "fold"]].to_csv(tmp / FOLDS, index=False)
        report_df = pd.DataFrame(report, columns=REPORT_COLUMNS)
        report_df.to_csv(tmp / REPORT_CSV, index=False)
        after = manifest["label"].value_counts()
        text = format_report(name, _portable(source), listed, before, after, report_df, how, ont)
        (tmp / REPORT_TXT).write_text(text)
        info = {
            "name": name,
            "root": _portable(source),
            "reader": reader,
            "reader_options": dict(reader_options or {}),
            "label_map": _describe_label_map(label_map),
            "n_folds": int(n_folds),
            "seed": int(seed),
            "folds_method": how,
            "classes": ont.order(manifest["label"].unique()),
            "n_images": int(len(manifest)),
            "digest": manifest_digest(manifest),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds") if timestamp else None,
            "zoo_version": __version__,
        }
        (tmp / INFO).write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(text)
        print(f"prepared dataset {name!r}: {out_dir}")
    return PreparedDataset(out_dir)


def format_report(name: str, source: str | Path, listed: int, before: pd.Series, after: pd.Series,
                  report: pd.DataFrame, how: str, ont) -> str:
    """Counts per class before (files listed under that label) and after cleaning, with the
    dropped/converted/flagged counts, then the reasons."""
    labels = ont.order(set(before.index) | set(after.index))
    acts = report[report["label"].notna()].groupby(["label", "action"]).size()
    rows = []
    for lab in labels:
        rows.append([lab, int(before.get(lab, 0)), int(acts.get((lab, clean.DROPPED), 0)),
                     int(acts.get((lab, clean.CONVERTED), 0)), int(acts.get((lab, clean.FLAGGED), 0)),
                     int(after.get(lab, 0))])
    n_unusable = int((report["label"].isna()).sum())
    if n_unusable:
        rows.append([NOT_IMAGES, n_unusable, n_unusable, 0, 0, 0])
    rows.append(["total", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows),
                 sum(r[4] for r in rows), sum(r[5] for r in rows)])
    table = pd.DataFrame(rows, columns=["class", "before", "dropped", "converted", "flagged", "after"])
    lines = [f"dataset {name!r} from {source}: {listed} files listed by the reader", "",
             table.to_string(index=False), "", f"folds: {how}"]
    if len(report):
        lines += ["", "reasons:"]
        kinds = report["reason"].map(_reason_kind)
        for (action, kind), n in report.groupby([report["action"], kinds]).size().items():
            lines.append(f"  {action:9s} {n:6d}  {kind}")
        lines.append(f"(every file and its reason: {REPORT_CSV})")
    return "\n".join(lines) + "\n"


def _reason_kind(reason: str) -> str:
    """Collapse per-file details (distances, pixel counts, label lists) into a category."""
    for key in ("near-duplicate", "byte-identical", "identical file under different labels",
                "possible duplicate", "mask grey levels", "not an image", "truncated", "zero-size",
                "hidden/system", "no class label", "class not selected", "does not exist"):
        if key in reason:
            return key
    return reason.split("(")[0].strip()


def _row(src: Any, label: str | None, action: str, reason: str, related: str | None = None) -> dict:
    get = src.get if hasattr(src, "get") else lambda k: getattr(src, k, None)
    source_label = get("source_label")
    return {"image": get("image"), "source_label": None if pd.isna(source_label) else source_label,
            "label": label, "action": action, "reason": reason, "related": related}


def _describe_label_map(label_map: Any) -> Any:
    if label_map is None or isinstance(label_map, Mapping):
        return None if label_map is None else {str(k): str(v) for k, v in label_map.items()}
    return _portable(Path(label_map).expanduser().resolve())


def _portable(source: Path) -> str:
    """Root as stored in dataset.json: relative to the project when inside it (clones move)."""
    try:
        return source.relative_to(project_dir().resolve()).as_posix()
    except ValueError:
        return str(source)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"dataset name {name!r} must be a plain folder name (e.g. 'pbc')")


def _check_overwritable(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / INFO).is_file():
        raise ValueError(f"{out_dir} exists and is not a prepared dataset; refusing to overwrite it "
                              "(choose another --out or name)")
