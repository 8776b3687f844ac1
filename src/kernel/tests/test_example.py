"""media/example.ipynb (made by media/make_example_notebook.py) is a valid notebook with the magic's real outputs."""

import json
import os

import nbformat
from conftest import REPO, RESULT_MIME

NOTEBOOK = os.path.join(REPO, "media", "example.ipynb")


def test_example_notebook_has_real_outputs_and_stays_small():
    assert os.path.getsize(NOTEBOOK) < 1024 * 1024
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    results = [
        o
        for c in code
        for o in c.outputs
        if o.output_type in ("display_data", "execute_result") and RESULT_MIME in o.data
    ]
    assert len(results) == 3, "the %%segment cell, the follow-up and the refined result"
    for o in results:
        assert o.data["image/png"] and o.data["text/plain"] and o.data["text/markdown"]
        payload = o.data[RESULT_MIME]
        assert payload["format"] == "reason-segment-result/1" and payload["image"]["data"]
    first, followup, refined = (o.data[RESULT_MIME] for o in results)
    assert first["masks"], "the trained model's answer has a [SEG] with a mask"
    assert "shapes-7b" in first["model"]["bundle"]
    assert followup["history"], "the follow-up re-fed the first turn"
    assert refined["masks"][0]["refined"]["box"], "the last cell refined mask 0 with a box"
    assert "refined" in results[2].data["text/plain"]
    for payload in (first, followup, refined):  # no paths of the machine that made it
        assert not os.path.isabs(payload["model"]["bundle"]) and not os.path.isabs(payload["image"]["source"])
    assert REPO not in json.dumps(nb)
    numpy_cell = next(c for c in code if "import numpy" in c.source)
    assert "bool" in "".join(o.get("text", "") for o in numpy_cell.outputs)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
