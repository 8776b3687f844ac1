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
    results = [o for c in code for o in c.outputs if o.output_type == "display_data" and RESULT_MIME in o.data]
    assert len(results) == 2, "the %%segment cell and the follow-up"
    for o in results:
        assert o.data["image/png"] and o.data["text/plain"]
        payload = o.data[RESULT_MIME]
        assert payload["format"] == "reason-segment-result/1" and payload["image"]["data"]
    assert results[0].data[RESULT_MIME]["masks"], "the first answer's [SEG]s have masks"
    assert results[1].data[RESULT_MIME]["history"], "the follow-up re-fed the first turn"
    for o in results:  # no paths of the machine that made it
        payload = o.data[RESULT_MIME]
        assert not os.path.isabs(payload["model"]["bundle"]) and not os.path.isabs(payload["image"]["source"])
    assert REPO not in json.dumps(nb)
    numpy_cell = code[-1]
    assert "cat.masks" in numpy_cell.source
    assert "bool" in "".join(o.get("text", "") for o in numpy_cell.outputs)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
