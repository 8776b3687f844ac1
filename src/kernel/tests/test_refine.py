"""Refining a mask from the kernel against the real host: the comm the JupyterLab renderer opens
(reason_segment.refine, one request in the open message, one answer) and the result object's own refine(); both give
the refine goldens' masks (SAM's prompt decoder in PyTorch), and the kernel's result follows what the output shows.

The tests of this module share one kernel and run in order."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest
from conftest import BUNDLE, RESULT_MIME, ask, decode, goldens, iou, refine_goldens

REFINES = refine_goldens()
CASE = next(c for c in goldens() if c["name"] == "coffee-two-seg")
POINT = next(r for r in REFINES if r["name"] == "coffee-two-seg/point")
POINT_BOX = next(r for r in REFINES if r["name"] == "coffee-two-seg/point-box")


@pytest.fixture(scope="module")
def result(kernel) -> Dict[str, Any]:
    """The golden case run as a cell: its payload (with the resultId the host gave it)."""
    code = (
        f"%%segment {os.path.join(BUNDLE, CASE['image'])} --model {BUNDLE} "
        f"--assistant-prefix '{CASE['assistant_prefix']}' -n {CASE['max_new_tokens']} -q --out r\n{CASE['prompt']}"
    )
    ex = kernel.execute(code)
    assert ex.status == "ok", ex.error_lines()
    payload = next(d["data"][RESULT_MIME] for d in ex.displays if RESULT_MIME in d["data"])
    assert payload["resultId"] and len(payload["masks"]) == 2
    return payload


def test_comm_refine_gives_the_goldens_mask_and_set_updates_the_kernels_result(kernel, result):
    rid = result["resultId"]
    i = POINT["mask_index"]
    prompt = {"points": POINT["points"], "labels": POINT["labels"]}
    answer = ask(kernel, {"op": "refine", "resultId": rid, "maskIndex": i, "prompt": prompt})
    assert "error" not in answer, answer
    mask = answer["mask"]
    assert iou(decode(mask["rle"]), decode(POINT["mask"]["rle"])) >= 0.999
    assert mask["refined"] == prompt
    # The kernel's result object already holds the refined mask...
    assert kernel.value("r.refined") == [prompt, None]
    assert kernel.value("[int(m.sum()) for m in r.masks]")[i] == mask["area"]

    # ...and follows the output when the renderer undoes it: 'set' with the model's own mask.
    answer = ask(kernel, {"op": "set", "resultId": rid, "maskIndex": i, "mask": result["masks"][i]})
    assert "error" not in answer, answer
    assert kernel.value("r.refined") == [None, None]
    assert kernel.value("r.rles") == [m["rle"] for m in result["masks"]]
    bundle = answer["bundle"]
    assert RESULT_MIME not in bundle and "refined" not in bundle["text/plain"]

    # Redo: the refined mask again; the output's text says so, and its picture is the model's (the note says so).
    answer = ask(kernel, {"op": "set", "resultId": rid, "maskIndex": i, "mask": mask})
    assert "refined: 1 positive point(s))" in answer["bundle"]["text/plain"]
    assert "before refining" in answer["bundle"]["text/markdown"]
    assert answer["bundle"]["image/png"]


def test_comm_errors_are_one_line(kernel, result):
    rid = result["resultId"]
    cases = [
        ({"op": "refine", "resultId": "nope", "maskIndex": 0, "prompt": {"points": [], "labels": []}}, "run its cell"),
        ({"op": "refine", "resultId": rid, "maskIndex": 5, "prompt": {"points": [], "labels": []}}, "2 mask(s)"),
        (
            {"op": "refine", "resultId": rid, "maskIndex": 0, "prompt": {"points": [[9999, 1]], "labels": [1]}},
            "outside",
        ),
        ({"op": "set", "resultId": rid, "maskIndex": 0, "mask": {"area": 1}}, "COCO RLE"),
        ({"op": "what", "resultId": rid, "maskIndex": 0}, "unknown request"),
    ]
    for data, fragment in cases:
        answer = ask(kernel, data)
        assert fragment in answer.get("error", ""), (data, answer)
        assert "\n" not in answer["error"]


def test_result_refine_in_python_matches_the_goldens(kernel, result):
    i = POINT_BOX["mask_index"]
    area = kernel.value(
        f"int(r.refine(mask={i}, points={POINT_BOX['points']}, labels={POINT_BOX['labels']}, "
        f"box={POINT_BOX['box']}).sum())"
    )
    rle = kernel.value(f"r.rles[{i}]")
    assert area == decode(rle).sum()
    assert iou(decode(rle), decode(POINT_BOX["mask"]["rle"])) >= 0.999
    assert kernel.value(f"r.refined[{i}]")["box"] == POINT_BOX["box"]
    # No points and no box: the model's own mask back (SAM's decoder run again without prompts).
    kernel.value(f"int(r.refine(mask={i}).sum())")
    assert iou(decode(kernel.value(f"r.rles[{i}]")), decode(result["masks"][i]["rle"])) >= 0.999
    assert kernel.value(f"r.refined[{i}]") is None


def test_refine_after_the_host_stopped_says_to_run_the_cell_again(kernel, result):
    assert kernel.execute("%segment_stop").status == "ok"
    ex = kernel.execute("r.refine(mask=0, points=[[10, 10]])")
    assert ex.status == "error"
    assert "run its cell again" in "".join(ex.error_lines())
    empty = {"points": [], "labels": []}
    answer = ask(kernel, {"op": "refine", "resultId": result["resultId"], "maskIndex": 0, "prompt": empty})
    assert "run its cell again" in answer["error"]
