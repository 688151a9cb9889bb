"""The explorer page in headless Chromium (Debian's /usr/bin/chromium via Playwright): click a node,
see its cells; click a cell, see its 8 references in a 3x3 grid; nothing is fetched from outside."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from zoo.reference import ReferenceBank
from zoo.reference.explorer import build_explorer, thumbnail_data_uri
from zoo.som import BatchSOM

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_page(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (12, 3)), rng.normal(3, 0.3, (12, 3))]).astype(np.float32)
    labels = ["lymphocyte"] * 12 + ["neutrophil"] * 12
    ids = [f"cell{i}" for i in range(24)]
    som = BatchSOM(4, 4, epochs=6, device="cpu").fit(x)
    bank = ReferenceBank.build(x, labels, ids, som=som)
    res = bank.query(x, ids=ids, k=8)
    colours = [(200, 60, 60), (60, 60, 200)]
    cells = []
    for i in range(24):
        img = np.full((16, 16, 3), colours[i // 12], np.uint8)
        cells.append({"id": ids[i], "label": labels[i], "node": int(bank.node[i]), "thumb": thumbnail_data_uri(img),
                      "pred": "neutrophil" if i == 0 else labels[i], "split": "bank"})
    refs = {ids[i]: [ids[j] for j in res.indices[i]] for i in range(24)}
    path = build_explorer(tmp_path / "explorer.html", som.umatrix(), cells, ["lymphocyte", "neutrophil"], refs,
                          summary={"precision_at_8": 1.0})
    return path, bank


def test_page_is_self_contained(tmp_path):
    path, _ = make_page(tmp_path)
    text = path.read_text()
    assert "<script src" not in text and "<link" not in text
    assert "data:image/jpeg;base64," in text
    assert "https://" not in text


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install -y chromium)")
def test_click_node_lists_its_cells_and_query_view_shows_references(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (browser: Debian chromium)")
    path, bank = make_page(tmp_path)
    node = int(bank.node[0])
    expected = int((bank.node == node).sum())
    outside = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.locator("rect.node").count() == 16
            assert page.locator("circle.wrong-mark").count() == 1          # cell0 is misclassified
            page.locator(f"#node-{node}").click()
            assert page.locator("#cells .cell").count() == expected
            assert f"{expected} cells" in page.locator("#cellsTitle").inner_text()
            assert page.locator("#cells .cell.wrong").count() >= 1
            page.locator("#cells .cell[data-id='cell0']").click()
            assert page.locator("#queryGrid td").count() == 9
            assert page.locator("#queryGrid td.center img").get_attribute("alt") == "cell0"
            assert page.locator("#queryGrid td.ref").count() == 8
            # the class selector keeps only one class's nodes tinted
            page.select_option("#classSelect", "neutrophil")
            assert page.locator("svg circle:not(.wrong-mark)").count() == len(set(bank.node[bank.labels == "neutrophil"]))
            assert not errors, errors
        finally:
            browser.close()
    assert outside == []
