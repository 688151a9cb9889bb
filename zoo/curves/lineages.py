"""Which maturation series SMR regresses along curves, from the cell ontology.

A spec is a comma-separated list; each item is either

* a lineage id of the ontology (``neutrophil``, ``erythroid``, ``monocyte``...): its ranked stages
  (``Ontology.stages``), optionally prefixed by ``blast+`` to put the blast (the progenitor of the
  myeloid lineages, ``progenitor_of`` in the ontology) before the first stage; or
* an explicit chain of class ids ``a>b>c`` (immature to mature).

The default, ``blast+neutrophil,erythroid``, is the paper's: blast + the five neutrophil stages, and
proerythroblast + three erythroblast stages. Stages absent from the dataset are dropped (PBC holds
PMY → MY → MMY → BNE → SNE and no staged erythroblasts, so only the neutrophil series remains);
a series left with fewer than two stages is dropped with a warning. Classes of no series are
trained by TML alone, as in the paper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

log = logging.getLogger(__name__)

DEFAULT_LINEAGES = "blast+neutrophil,erythroid"


@dataclass(frozen=True)
class Lineage:
    """A maturation series: ``name`` and its ``stages`` (class ids, immature first)."""

    name: str
    stages: tuple[str, ...]


def parse_lineages(spec: str | Sequence[str], ontology=None) -> list[Lineage]:
    """Every series of ``spec`` with all its ontology stages (no dataset filtering)."""
    from zoo.knowledge import load_ontology

    ont = ontology or load_ontology()
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    items = [s for s in items if s]
    if not items:
        raise ValueError(f"lineages {spec!r} names no series; e.g. {DEFAULT_LINEAGES!r}")
    out: list[Lineage] = []
    for item in items:
        if ">" in item:
            stages = tuple(s.strip() for s in item.split(">"))
            bad = [s for s in stages if s not in ont]
            if bad:
                raise ValueError(f"lineage chain {item!r} names classes the ontology does not know: {bad}")
            name = ont.lineage(stages[-1])
        else:
            prefix, _, lid = item.rpartition("+")
            if lid not in ont.lineages:
                raise ValueError(f"unknown lineage {lid!r} in lineages={spec!r}; ontology lineages: "
                                 f"{', '.join(ont.lineages)} (or a chain like promyelocyte>myelocyte)")
            stages = tuple(ont.stages(lid))
            if prefix:
                if prefix not in ont:
                    raise ValueError(f"{prefix!r} in {item!r} is not a class of the ontology (e.g. blast+{lid})")
                stages = (prefix, *stages)
            name = lid
        if len(set(stages)) != len(stages):
            raise ValueError(f"lineage {item!r} repeats a stage: {stages}")
        out.append(Lineage(name, stages))
    names = [lin.name for lin in out]
    if len(set(names)) != len(names):
        raise ValueError(f"lineages {spec!r} name the same series twice: {names}")
    used = [s for lin in out for s in lin.stages]
    if len(set(used)) != len(used):
        raise ValueError(f"lineages {spec!r} put a class in two series: {sorted({s for s in used if used.count(s) > 1})}")
    return out


def resolve_lineages(spec: str | Sequence[str], classes: Sequence[str], ontology=None) -> list[Lineage]:
    """The series of ``spec`` restricted to ``classes`` (those with >= 2 stages present)."""
    present = set(classes)
    out = []
    for lin in parse_lineages(spec, ontology):
        stages = tuple(s for s in lin.stages if s in present)
        if len(stages) < 2:
            log.warning("lineage %r has %d of its stages in this dataset (%s): not regressed", lin.name,
                        len(stages), ", ".join(stages) or "none")
            continue
        out.append(Lineage(lin.name, stages))
    if not out:
        raise ValueError(f"none of the lineages {spec!r} has two stages among this dataset's classes "
                         f"({', '.join(classes)}); pass lineages= naming series the dataset holds")
    return out
