"""Regenerates media/example.ipynb: builds the notebook, runs it in a real kernel (nbclient + ipykernel) against the
real host with the committed tiny bundle, and saves it with its outputs.

    npx tsc -p .                                        # the host (out/src/host/server.js)
    src/kernel/venv run media/make_example_notebook.py  # the kernel test venv has nbclient and ipykernel

The tiny bundle has random weights: its words are noise, but every output (streamed answer, result display with
masks, overlay PNG, numpy use of the masks) is what the magic really produces. Absolute paths of this checkout in the
outputs (the bundle and image source fields) are written relative to the notebook so the file does not name the
machine it was made on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "example.ipynb")
SERVER_JS = os.path.join(REPO, "out", "src", "host", "server.js")
SOURCE_IMAGE = os.path.join(REPO, "test", "fixtures", "images", "chelsea.jpg")  # scikit-image's Chelsea, 451x300
# Downscaled (with sharp, the host's own image library) so that the notebook with its outputs stays well under 1 MB.
IMAGE = "example-chelsea.jpg"
IMAGE_WIDTH = 240
BUNDLE = "../test/fixtures/bundles/tiny-7b"

md = nbformat.v4.new_markdown_cell
code = nbformat.v4.new_code_cell

CELLS = [
    md(
        "# Reason Segment in a notebook\n\n"
        "`%%segment IMAGE` runs LISA reasoning segmentation on an image with the instruction in the cell body. "
        "The answer streams into the cell, then the result shows with the Reason Segment renderer (or, without it, "
        "as a PNG overlay and text). See `docs/jupyter.md`.\n\n"
        "The photograph is scikit-image's *Chelsea*, downscaled. This notebook runs the repository's *tiny random-weight* test model, so the words are noise; "
        "`--assistant-prefix` makes its answer start with `[SEG]` tokens so that it produces masks "
        "(a real LISA model writes `[SEG]` by itself)."
    ),
    code(f"%load_ext reason_segment\n%segment_config --model {BUNDLE} --device cpu"),
    code(
        f"%%segment {IMAGE} --assistant-prefix 'Sure, [SEG] and [SEG].' --max-new-tokens 16 --out cat\n"
        "Segment the cat's face and the cat's ears."
    ),
    md(
        "A follow-up continues the conversation on the same image; the host's embedding cache means neither image "
        "encoder runs again."
    ),
    code("%%segment_followup --max-new-tokens 16\nWhich of the two is larger?"),
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
        "face, ears = cat.masks\n"
        "print(cat.image_size, face.dtype, face.shape)\n"
        "print('pixels per mask:', [int(m.sum()) for m in cat.masks])\n"
        "print('overlap of the two masks:', int(np.logical_and(face, ears).sum()))\n"
        "print('boxes (x, y, w, h):', cat.boxes)"
    ),
]


def main() -> int:
    if not os.path.isfile(SERVER_JS):
        print(f"{SERVER_JS} is missing: build the host first (npx tsc -p .)", file=sys.stderr)
        return 1
    subprocess.run(
        [
            "node",
            "-e",
            "require('sharp')(process.argv[1]).resize(+process.argv[3])"
            ".jpeg({quality: 85}).toFile(process.argv[2]).catch((e) => { console.error(e); process.exit(1); })",
            SOURCE_IMAGE,
            os.path.join(HERE, IMAGE),
            str(IMAGE_WIDTH),
        ],
        cwd=REPO,
        check=True,
    )
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
