"""Regenerates media/example.ipynb: builds the notebook, runs it in a real kernel (nbclient + ipykernel) against the
real host with the committed trained shapes bundle, and saves it with its outputs.

    npx tsc -p .                                        # the host (out/src/host/server.js)
    src/kernel/venv run media/make_example_notebook.py  # the kernel test venv has nbclient and ipykernel

The shapes bundle (test/fixtures/bundles/shapes-7b) is a tiny LISA trained on coloured shapes only; the scene is one of
its held-out scenes, which it never saw. Every output (streamed answer, result display with masks, the markdown and
PNG fallback, numpy use of the masks, a refined mask) is what the magic really produces. Absolute paths of this
checkout in the outputs (the bundle and image source fields) are written relative to the notebook so the file does not
name the machine it was made on.
"""

from __future__ import annotations

import json
import os
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "example.ipynb")
SERVER_JS = os.path.join(REPO, "out", "src", "host", "server.js")
BUNDLE = "../test/fixtures/bundles/shapes-7b"
IMAGE = f"{BUNDLE}/images/heldout-1.jpg"  # a held-out scene (576x768)

md = nbformat.v4.new_markdown_cell
code = nbformat.v4.new_code_cell

CELLS = [
    md(
        "# Reason Segment in a notebook\n\n"
        "`%%segment IMAGE` runs LISA reasoning segmentation on an image with the instruction in the cell body. "
        "The answer streams into the cell, then the result shows with the Reason Segment renderer (VS Code, or "
        "JupyterLab with the extension the package installs), or, without it, as text with a small PNG of the "
        "masks. See `docs/jupyter.md`.\n\n"
        "The model is the repository's tiny LISA trained on coloured shapes (`test/fixtures/bundles/shapes-7b`), "
        "and the scene is one it never saw in training. It knows nothing but shapes, and it is often wrong "
        "(held-out gIoU 0.24: see its README); the instructions end with LISA's \"Please output segmentation "
        'mask." as in its training.'
    ),
    code(f"%load_ext reason_segment\n%segment_config --model {BUNDLE} --device cpu"),
    code(
        f"%%segment {IMAGE} --max-new-tokens 40 --out shapes\n"
        "Which shape has the most corners? Please output segmentation mask."
    ),
    md(
        "A follow-up continues the conversation on the same image; the host's embedding cache means neither image "
        "encoder runs again."
    ),
    code("%%segment_followup --max-new-tokens 40\nWhich shape is the largest? Please output segmentation mask."),
    code(
        "counters = %segment_status\n"
        "{k: counters['counters'][k] for k in ('visionEncoderRuns', 'samEncoderRuns', 'cacheHits', 'requests')}"
    ),
    md(
        "The result object holds the masks as numpy boolean arrays (height x width), their COCO RLE, boxes and "
        "areas, and the raw payload."
    ),
    code(
        "import numpy as np\n"
        "star = shapes.masks[0]\n"
        "print(shapes.image_size, star.dtype, star.shape)\n"
        "print('pixels per mask:', [int(m.sum()) for m in shapes.masks])\n"
        "print('boxes (x, y, w, h):', shapes.boxes)"
    ),
    md(
        "Refine a mask with SAM's mask decoder: points (`labels` 1 for part of the object, 0 for not) and a box, in "
        "image pixels. The host reuses the image's cached embedding and the mask's `[SEG]` embedding, so no language "
        "model runs. In JupyterLab and VS Code the same is done by clicking on the picture (the mask's *Refine* "
        "button). Here the box is the mask's own bounding box."
    ),
    code(
        "x, y, w, h = shapes.boxes[0]\n"
        "refined = shapes.refine(mask=0, box=[x, y, x + w, y + h])\n"
        "print('pixels before:', int(star.sum()), 'after:', int(refined.sum()))\n"
        "print('refined with:', shapes.refined[0])\n"
        "shapes"
    ),
]


def main() -> int:
    if not os.path.isfile(SERVER_JS):
        print(f"{SERVER_JS} is missing: build the host first (npx tsc -p .)", file=sys.stderr)
        return 1
    nb = nbformat.v4.new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASON_SEGMENT_")}
    env["REASON_SEGMENT_HOST"] = SERVER_JS
    pkg = os.path.join(REPO, "src", "kernel")
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    old_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", record_timing=False, resources={"metadata": {"path": HERE}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    text = nbformat.writes(nb)
    # Paths of this checkout (in JSON strings, maybe escaped) become relative to the notebook.
    for prefix in (REPO + os.sep, json.dumps(REPO + os.sep)[1:-1]):
        text = text.replace(prefix, "../")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
        if not text.endswith("\n"):
            f.write("\n")
    size = os.path.getsize(OUT)
    print(f"wrote {OUT} ({size / 1024:.0f} KiB)")
    return 0 if size < 1024 * 1024 else 2


if __name__ == "__main__":
    sys.exit(main())
