"""What frontends without the extension's renderer show of a %%segment result, and line-magic text IPython must not
take for help syntax.

A notebook runs through nbclient in a real kernel against the real host; then each output is read the way a frontend
that shows ONE MIME type of a display bundle would read it:
- JupyterLab picks the lowest rank among the renderers it has (@jupyterlab/rendermime's standard factories:
  text/html 50, text/markdown 60, text/latex 70, image/svg+xml 80, images 90, javascript 110, text/plain 120; our
  extension registers the result type at rank 0), its markdown rendered to HTML;
- nbconvert's HTML exporter, run for real on the executed notebook.
The answer text and the overlay image must both be in what they show, and a result without masks must say so, in the
text and in the picture."""

from __future__ import annotations

import base64
import os
from html.parser import HTMLParser
from typing import Any, Dict, List, Tuple

import nbformat
from conftest import BUNDLE, REPO, RESULT_MIME, SERVER_JS, goldens
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbconvert.filters.markdown import markdown2html

from reason_segment import png

JUPYTERLAB_RANKS = {
    "text/html": 50,
    "text/markdown": 60,
    "text/latex": 70,
    "image/svg+xml": 80,
    "image/bmp": 90,
    "image/png": 90,
    "image/jpeg": 90,
    "image/gif": 90,
    "image/webp": 90,
    "text/javascript": 110,
    "application/javascript": 110,
    "text/plain": 120,
}
EXTENSION_RANK = 0  # src/renderer/jupyterlab/index.ts

MASKED = next(c for c in goldens() if c["masks"] and c["assistant_prefix"])
UNMASKED = next(c for c in goldens() if not c["masks"] and not c["assistant_prefix"])


def jupyterlab_choice(data: Dict[str, Any], extension: bool) -> str:
    ranks = dict(JUPYTERLAB_RANKS, **({RESULT_MIME: EXTENSION_RANK} if extension else {}))
    return min((m for m in data if m in ranks), key=lambda m: ranks[m])


class _Visible(HTMLParser):
    """The text a browser shows of an HTML document, and its inline PNG images."""

    def __init__(self) -> None:
        super().__init__()
        self.text: List[str] = []
        self.images: List[bytes] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Any]]) -> None:
        if tag in ("style", "script"):
            self._hidden += 1
        src = dict(attrs).get("src") or ""
        if tag == "img" and src.startswith("data:image/png;base64,"):
            self.images.append(base64.b64decode(src.split(",", 1)[1]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def visible(html: str) -> Tuple[str, List[bytes]]:
    p = _Visible()
    p.feed(html)
    return " ".join(" ".join(p.text).split()), p.images


def segment_cell(case: Dict[str, Any], n: int) -> str:
    prefix = f" --assistant-prefix '{case['assistant_prefix']}'" if case["assistant_prefix"] else ""
    return f"%%segment {os.path.join(BUNDLE, case['image'])} -q -n {n}{prefix}\n{case['prompt']}"


def says_no_mask(image: bytes) -> bool:
    """The "NO MASK" band: black and white pixels only across the top-left corner, both present."""
    w, h, rows = png.decode_rgb(image)
    band = [bytes(rows[y][: 3 * (w // 3)]) for y in range(max(1, h // 24))]  # inside the band at any size
    pixels = {r[i : i + 3] for r in band for i in range(0, len(r), 3)}
    return pixels == {b"\x00\x00\x00", b"\xff\xff\xff"}


def test_frontends_that_pick_one_mime_type_show_the_answer_and_the_overlay():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            f"%load_ext reason_segment\n%segment_config --host {SERVER_JS} --model {BUNDLE}",
            segment_cell(MASKED, 2),
            segment_cell(UNMASKED, 3),
        )
    ]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
    results = [o for c in nb.cells for o in c.outputs if o.output_type == "display_data" and RESULT_MIME in o.data]
    assert len(results) == 2, [o.get("output_type") for c in nb.cells for o in c.outputs]
    page_text, page_images = visible(HTMLExporter().from_notebook_node(nb)[0])
    for out, case in zip(results, (MASKED, UNMASKED)):
        data = out.data
        payload = data[RESULT_MIME]
        answer = " ".join(payload["text"].split())
        assert answer, "the model wrote something"
        assert "overlayPng" not in payload, "the full-size overlay stays out of the notebook"
        image = base64.b64decode(data["image/png"])
        w, h, _ = png.decode_rgb(image)
        assert max(w, h) <= png.MAX_SIDE
        masks_line = f"{len(payload['masks'])} masks" if case["masks"] else "no masks"
        assert bool(case["masks"]) == bool(payload["masks"])
        assert says_no_mask(image) == (not case["masks"]), "the PNG says NO MASK exactly when there is none"

        assert jupyterlab_choice(data, extension=True) == RESULT_MIME
        mime = jupyterlab_choice(data, extension=False)
        assert mime == "text/markdown", mime
        text, images = visible(markdown2html(data[mime]))
        assert answer in text, f"JupyterLab shows {mime} without the answer {answer!r}: {text!r}"
        assert masks_line in text, text
        assert images == [image], f"JupyterLab shows {mime} without the overlay image"

        assert answer in page_text, f"nbconvert's HTML lacks the answer {answer!r}"
        assert masks_line in page_text
        assert page_images.count(image) == 1, "nbconvert's HTML shows the overlay once"


def test_a_followup_ending_in_a_question_mark_is_a_followup_not_help(kernel):
    case = MASKED
    assert kernel.execute(f"%segment_config --model {BUNDLE}").status == "ok"
    assert kernel.execute(segment_cell(case, 2)).status == "ok"
    for code, prompt in (
        ("%segment_followup Which of the two is larger?", "Which of the two is larger?"),
        ("x = 1\n%segment_followup is it {x}??", "is it 1??"),
    ):
        ex = kernel.execute(code)
        assert ex.status == "ok", ex.error_lines()
        payloads = [d["data"][RESULT_MIME] for d in ex.displays if RESULT_MIME in d["data"]]
        assert len(payloads) == 1, f"{code!r} showed no result (IPython's help ran instead?)"
        assert payloads[0]["prompt"] == prompt
    # Help on the magic itself still works.
    assert kernel.execute("%segment_followup?").status == "ok"


def test_a_notebook_exported_from_the_chat_runs_as_is_in_a_fresh_kernel(tmp_path, monkeypatch):
    """The extension's export (src/extension/notebook.ts buildNotebook, run by node from out/) for a conversation of
    two answered turns and a stopped one, with the chat's options (assistant prefix, answer length), written to a
    folder elsewhere: it is small (the photo once per answer, a downscaled overlay, no full-size overlay), names the
    image and the model relative to itself, and executes top to bottom in a new kernel."""
    import json
    import subprocess

    image = os.path.join(BUNDLE, "images", "coffee.png")
    payload = json.load(open(os.path.join(REPO, "test", "fixtures", "payloads", "astronaut-3masks.json")))
    with open(image, "rb") as f:
        payload["image"]["data"] = base64.b64encode(f.read()).decode()
    # A full-size overlay as the chat hands it over (1600x1200), which the notebook must not carry at that size.
    big = [bytearray((x * 7 + y) & 255 for x in range(1600 * 3)) for y in range(1200)]
    payload["overlayPng"] = base64.b64encode(png.encode_rgb(1600, 1200, big)).decode()
    (tmp_path / "payload.json").write_text(json.dumps(payload))
    script = (
        "const { buildNotebook } = require(process.argv[1]);"
        "const r = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));"
        "const none = { ...r, masks: [] };"
        "const turns = [{ prompt: 'Segment the cup.', result: r }, { prompt: 'Tell me a story.', error: 'Stopped.' },"
        " { prompt: 'And the spoon?', result: none }];"
        "process.stdout.write(JSON.stringify(buildNotebook({ image: process.argv[3], model: process.argv[4],"
        " notebookDir: process.argv[5], assistantPrefix: 'Sure, [SEG].', maxNewTokens: 4 }, turns)));"
    )
    notebook_dir = tmp_path / "nb"
    notebook_dir.mkdir()
    out = subprocess.run(
        [
            "node",
            "-e",
            script,
            os.path.join(REPO, "out", "src", "extension", "notebook.js"),
            str(tmp_path / "payload.json"),
            image,
            BUNDLE,
            str(notebook_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert len(out) < 2 * len(payload["image"]["data"]) + 2 * 300_000, f"{len(out)} bytes"
    nb = nbformat.reads(out, as_version=4)
    nbformat.validate(nb)
    shipped = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "display_data"]
    assert len(shipped) == 2
    for o, has_masks in zip(shipped, (True, False)):
        assert "overlayPng" not in o.data[RESULT_MIME]
        small = base64.b64decode(o.data["image/png"])
        assert png.decode_rgb(small)[:2] == (640, 480), "downscaled to 640 px on the longer side"
        assert says_no_mask(small) == (not has_masks)
        # The extension's TypeScript (notebookPng.ts) and the magic's png.py make the same picture.
        w, h, rows = png.downscale(1600, 1200, [bytearray(r) for r in big], png.MAX_SIDE)
        if not has_masks:
            png.stamp_label(w, h, rows)
        assert png.decode_rgb(small)[2] == rows
    sources = ["".join(c.source) for c in nb.cells if c.cell_type == "code"]
    assert sources[0].splitlines()[1].split()[-1] == BUNDLE, "a model outside the notebook's folder keeps its path"
    segment_line = next(s for s in sources if s.startswith("%%segment ")).split("\n")[0]
    assert segment_line.split()[1] == os.path.relpath(image, notebook_dir), (
        "the image is named relative to the notebook"
    )
    assert segment_line.endswith('-n 4 --assistant-prefix "Sure, [SEG]."'), segment_line
    assert sources[-1].startswith("%%segment_followup -n 4 --assistant-prefix "), sources[-1]
    monkeypatch.setenv("REASON_SEGMENT_HOST", SERVER_JS)
    for k in ("REASON_SEGMENT_MODEL", "REASON_SEGMENT_SERVER"):
        monkeypatch.delenv(k, raising=False)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(notebook_dir)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], json.dumps(outputs)[:2000]
    results = [o.data[RESULT_MIME] for o in outputs if o.output_type == "display_data" and RESULT_MIME in o.data]
    assert [r["prompt"] for r in results] == ["Segment the cup.", "And the spoon?"]
    assert results[0]["image"]["source"] == image
    assert results[1]["history"][0]["user"] == "Segment the cup."
    assert len(results[1]["history"]) == 1, "the stopped turn is not re-fed"
    # The options ran again: without the prefix the tiny model gives no mask, with it each turn has one.
    assert [len(r["masks"]) for r in results] == [1, 1], [r["text"] for r in results]
