"""The explorer page: ONE self-contained HTML file (no server, no CDN, thumbnails as base64).

What it shows (the thesis's interactive map, Fig. 43/44/58 and the 3x3 grid of Fig. 34):
* the U-matrix as an SVG grid (light = large distance = cluster border), each node tinted by the
  majority class of its cells, a red dot on nodes holding misclassified cells, a class selector
  that shows one class's hit map only;
* clicking a node lists its cells (thumbnail, label, prediction);
* clicking a cell (or choosing one in the query list) opens the query view: the cell in the middle
  of a 3x3 grid with its 8 references around it, each with its label.

Everything (data, script, style) is inlined: the file opens from disk or from the MLflow UI.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5"]


def thumbnail_data_uri(image: Any, size: int = 48, quality: int = 80) -> str:
    """A small JPEG of ``image`` (anything ``decode_image`` reads) as a ``data:`` URI."""
    from PIL import Image

    from zoo.data.images import decode_image

    img = decode_image(image).convert("RGB")
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_explorer(path: str | Path, umatrix: np.ndarray, cells: Sequence[dict], classes: Sequence[str],
                   references: dict[str, Sequence[str]] | None = None, title: str = "Reference explorer",
                   summary: dict[str, Any] | None = None) -> Path:
    """Write the explorer page.

    ``cells``: dicts with ``id``, ``label``, ``node`` (flat index row * n_cols + col), ``thumb``
    (data URI) and optionally ``pred`` (model's prediction; differs from label = misclassified) and
    ``split`` (e.g. ``bank``/``query``). ``references``: cell id -> ids of its references (8), which
    must be cells too. Returns the path written."""
    um = np.asarray(umatrix, dtype=np.float64)
    rows, cols = um.shape
    span = float(np.nanmax(um) - np.nanmin(um)) or 1.0
    norm = ((um - np.nanmin(um)) / span).round(4)
    ids = {str(c["id"]) for c in cells}
    for c in cells:
        if not 0 <= int(c["node"]) < rows * cols:
            raise ValueError(f"cell {c['id']!r} has node {c['node']} outside the {rows}x{cols} map")
    references = {str(k): [str(r) for r in v] for k, v in (references or {}).items()}
    for k, v in references.items():
        missing = [r for r in [k, *v] if r not in ids]
        if missing:
            raise ValueError(f"references of {k!r} name cells not on the page: {missing[:3]}")
    data = {
        "rows": rows, "cols": cols, "umatrix": norm.ravel().tolist(), "classes": [str(c) for c in classes],
        "colors": {str(c): PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)},
        "cells": [{"id": str(c["id"]), "label": str(c["label"]), "node": int(c["node"]),
                   "pred": None if c.get("pred") is None else str(c["pred"]), "split": str(c.get("split", "")),
                   "thumb": c.get("thumb", "")} for c in cells],
        "references": references, "summary": summary or {},
    }
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = _TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
#layout{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
#map svg{border:1px solid #999;background:#000}
rect.node{cursor:pointer} rect.node:hover{stroke:#ff0;stroke-width:.15}
rect.node.selected{stroke:#0af;stroke-width:.25}
#cells{max-width:520px} .cell{display:inline-block;margin:3px;text-align:center;font-size:11px;cursor:pointer;
 border:2px solid transparent} .cell.wrong{border-color:#d00} .cell img{width:48px;height:48px;display:block}
#query table{border-collapse:collapse} #query td{border:1px solid #ccc;padding:3px;text-align:center;font-size:11px}
#query td.center{border:3px solid #333} #query img{width:72px;height:72px;display:block}
.legend span{display:inline-block;margin-right:8px;font-size:12px} .sw{width:10px;height:10px;display:inline-block;margin-right:3px}
#summary{font-size:12px;color:#555}
</style></head><body>
<h2>__TITLE__</h2>
<div id="summary"></div>
<div><label>Class overlay: <select id="classSelect"><option value="">majority class</option></select></label>
<label><input type="checkbox" id="showWrong" checked> mark misclassified</label>
<label> Query: <select id="querySelect"><option value="">(pick a cell)</option></select></label></div>
<div class="legend" id="legend"></div>
<div id="layout">
 <div id="map"></div>
 <div><h3 id="cellsTitle">Click a node to list its cells</h3><div id="cells"></div></div>
 <div id="query"><h3>Query view</h3><div id="queryGrid">Click a cell to see its references.</div></div>
</div>
<script id="explorer-data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("explorer-data").textContent);
const byId = {}; D.cells.forEach(c => byId[c.id] = c);
const byNode = {}; D.cells.forEach(c => (byNode[c.node] = byNode[c.node] || []).push(c));
const NS = "http://www.w3.org/2000/svg";
const px = Math.max(4, Math.min(24, Math.floor(560 / Math.max(D.rows, D.cols))));
function grey(v){const g=Math.round(255*v);return `rgb(${g},${g},${g})`;}
function majority(cells, cls){
  if(cls) return cells.some(c=>c.label===cls) ? cls : null;
  const n={}; cells.forEach(c=>n[c.label]=(n[c.label]||0)+1);
  let best=null; for(const k in n) if(best===null||n[k]>n[best]) best=k; return best;}
function isWrong(c){return c.pred!==null && c.pred!==undefined && c.pred!==c.label;}
function draw(){
  const cls=document.getElementById("classSelect").value, showWrong=document.getElementById("showWrong").checked;
  const svg=document.createElementNS(NS,"svg");
  svg.setAttribute("viewBox",`0 0 ${D.cols} ${D.rows}`); svg.setAttribute("width",D.cols*px); svg.setAttribute("height",D.rows*px);
  for(let r=0;r<D.rows;r++) for(let c=0;c<D.cols;c++){
    const node=r*D.cols+c, cells=byNode[node]||[];
    const rect=document.createElementNS(NS,"rect");
    rect.setAttribute("x",c); rect.setAttribute("y",r); rect.setAttribute("width",1); rect.setAttribute("height",1);
    rect.setAttribute("fill",grey(D.umatrix[node])); rect.setAttribute("class","node");
    rect.setAttribute("id",`node-${node}`); rect.dataset.node=node; rect.dataset.count=cells.length;
    const t=document.createElementNS(NS,"title"); t.textContent=`node (${r}, ${c}): ${cells.length} cells`; rect.appendChild(t);
    rect.addEventListener("click",()=>showNode(node));
    svg.appendChild(rect);
    const m=majority(cells,cls);
    if(m!==null){const dot=document.createElementNS(NS,"circle");
      dot.setAttribute("cx",c+.5); dot.setAttribute("cy",r+.5); dot.setAttribute("r",.3);
      dot.setAttribute("fill",D.colors[m]||"#fff"); dot.setAttribute("pointer-events","none"); svg.appendChild(dot);}
    if(showWrong && cells.some(x=>isWrong(x)&&(!cls||x.label===cls))){const w=document.createElementNS(NS,"circle");
      w.setAttribute("cx",c+.82); w.setAttribute("cy",r+.18); w.setAttribute("r",.14); w.setAttribute("fill","#f00");
      w.setAttribute("class","wrong-mark"); w.setAttribute("pointer-events","none"); svg.appendChild(w);}
  }
  const host=document.getElementById("map"); host.innerHTML=""; host.appendChild(svg);
}
function cellBox(c){
  const d=document.createElement("div"); d.className="cell"+(isWrong(c)?" wrong":""); d.dataset.id=c.id;
  d.innerHTML=`<img alt="${c.id}" src="${c.thumb}"><b style="color:${D.colors[c.label]||"#000"}">${c.label}</b>`+
    (isWrong(c)?`<br>pred ${c.pred}`:"");
  d.title=c.id+(c.split?` (${c.split})`:""); d.addEventListener("click",()=>showQuery(c.id)); return d;}
function showNode(node){
  document.querySelectorAll("rect.selected").forEach(e=>e.classList.remove("selected"));
  const el=document.getElementById(`node-${node}`); if(el) el.classList.add("selected");
  const cells=byNode[node]||[], r=Math.floor(node/D.cols), c=node%D.cols;
  document.getElementById("cellsTitle").textContent=`Node (${r}, ${c}): ${cells.length} cells`;
  const box=document.getElementById("cells"); box.innerHTML="";
  cells.forEach(x=>box.appendChild(cellBox(x)));
}
function showQuery(id){
  const q=byId[id], refs=(D.references[id]||[]).map(r=>byId[r]);
  const grid=document.getElementById("queryGrid");
  if(!refs.length){grid.textContent=`${id}: no references stored for this cell`; return;}
  const slots=[0,1,2,3,null,4,5,6,7]; let h="<table>";
  for(let i=0;i<9;i++){ if(i%3===0) h+="<tr>";
    const c=slots[i]===null?q:refs[slots[i]];
    h+= c? `<td class="${slots[i]===null?"center":"ref"}"><img alt="${c.id}" src="${c.thumb}"><b>${c.label}</b></td>`:"<td></td>";
    if(i%3===2) h+="</tr>";}
  grid.innerHTML=h+"</table>"; document.getElementById("querySelect").value=id;
}
(function init(){
  const sel=document.getElementById("classSelect"), lg=document.getElementById("legend");
  D.classes.forEach(c=>{const o=document.createElement("option");o.value=c;o.textContent=c;sel.appendChild(o);
    lg.insertAdjacentHTML("beforeend",`<span><i class="sw" style="background:${D.colors[c]}"></i>${c}</span>`);});
  const qs=document.getElementById("querySelect");
  Object.keys(D.references).forEach(k=>{const o=document.createElement("option");o.value=k;o.textContent=`${k} (${byId[k].label})`;qs.appendChild(o);});
  qs.addEventListener("change",()=>qs.value&&showQuery(qs.value));
  sel.addEventListener("change",draw); document.getElementById("showWrong").addEventListener("change",draw);
  const s=Object.entries(D.summary).map(([k,v])=>`${k}: ${typeof v==="number"?v.toFixed(4):v}`).join(" · ");
  document.getElementById("summary").textContent=s;
  draw();
})();
</script></body></html>
"""
