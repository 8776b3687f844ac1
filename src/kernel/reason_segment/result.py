"""The object a ``%%segment`` cell returns: the host's result payload with Python-friendly accessors.

It displays itself as the Reason Segment result MIME type (drawn by the extension's notebook renderer). Frontends
without the renderer show ONE other type of the bundle, the richest they know (JupyterLab and nbconvert prefer
``text/html`` to ``image/png`` to ``text/plain``), so ``text/html`` carries the answer, the mask summary and the
overlay together; ``image/png`` (for exporters that take images only) and ``text/plain`` stay beside it.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Dict, List, Optional

from . import rle as _rle
from .protocol import RESULT_MIME

try:  # numpy is optional: masks are numpy bool arrays when it is there, rows of 0/1 bytes otherwise.
    import numpy as _np  # noqa: F401

    HAVE_NUMPY = True
except Exception:  # pragma: no cover - depends on the environment
    HAVE_NUMPY = False


class SegmentResult:
    """One answer of the model on one image.

    Attributes: ``text`` (the answer as LISA shows it, ``[SEG]`` kept), ``answer`` (this turn's answer, what a
    follow-up re-feeds), ``prompt``, ``history`` (earlier turns, a list of ``{"user", "assistant"}``), ``payload`` (the
    raw result document from the host), ``image_path``. Masks: ``masks`` (one per ``[SEG]``, numpy ``bool`` arrays of
    shape (height, width) when numpy is installed, else lists of row bytearrays of 0/1), ``rles`` (COCO RLE dicts),
    ``boxes`` (COCO ``[x, y, w, h]``), ``areas``, ``scores``.
    """

    def __init__(self, payload: Dict[str, Any], image_path: Optional[str] = None):
        self.payload = payload
        self.image_path = image_path
        self._masks: Optional[List[Any]] = None

    # ---- plain fields --------------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.payload.get("text", "")

    @property
    def answer(self) -> str:
        return self.payload.get("answer", "")

    @property
    def prompt(self) -> str:
        return self.payload.get("prompt", "")

    @property
    def history(self) -> List[Dict[str, str]]:
        return list(self.payload.get("history", []))

    @property
    def output_ids(self) -> List[int]:
        return list(self.payload.get("outputIds", []))

    @property
    def image_size(self):
        """(height, width) of the original image."""
        im = self.payload.get("image", {})
        return (im.get("height"), im.get("width"))

    @property
    def sha256(self) -> Optional[str]:
        return self.payload.get("image", {}).get("sha256")

    @property
    def timings(self) -> Dict[str, Any]:
        return dict(self.payload.get("timings", {}))

    # ---- masks ---------------------------------------------------------------------------------------------------
    @property
    def rles(self) -> List[Dict[str, Any]]:
        return [m["rle"] for m in self.payload.get("masks", [])]

    @property
    def boxes(self) -> List[List[float]]:
        return [list(m.get("bbox", [])) for m in self.payload.get("masks", [])]

    @property
    def areas(self) -> List[int]:
        return [m.get("area") for m in self.payload.get("masks", [])]

    @property
    def scores(self) -> List[float]:
        return [m.get("score") for m in self.payload.get("masks", [])]

    @property
    def masks(self) -> List[Any]:
        if self._masks is None:
            decode = _rle.decode_numpy if HAVE_NUMPY else _rle.decode_rows
            self._masks = [decode(r) for r in self.rles]
        return self._masks

    def __len__(self) -> int:
        return len(self.payload.get("masks", []))

    # ---- images --------------------------------------------------------------------------------------------------
    @property
    def overlay_png(self) -> Optional[bytes]:
        """The image with every mask blended in, as PNG bytes (None when the host was not asked for it)."""
        b64 = self.payload.get("overlayPng")
        return base64.b64decode(b64) if b64 else None

    def save_overlay(self, path: str) -> str:
        data = self.overlay_png
        if data is None:
            raise ValueError("this result has no overlay image")
        with open(path, "wb") as f:
            f.write(data)
        return path

    # ---- display -------------------------------------------------------------------------------------------------
    def _shown_answer(self) -> str:
        # `text` spans the whole conversation after the first prompt; a follow-up shows just its own answer.
        shown = self.answer if self.history else self.text
        return shown.strip() or "(empty answer)"

    def _masks_line(self) -> str:
        n = len(self)
        if not n:
            return "no masks"
        parts = []
        for i, m in enumerate(self.payload.get("masks", [])):
            x, y, w, h = (int(round(v)) for v in m.get("bbox", [0, 0, 0, 0]))
            parts.append(f"[SEG] {i}: {m.get('area', 0)} px at x={x} y={y} {w}x{h}")
        return f"{n} mask{'s' if n != 1 else ''}: " + "; ".join(parts)

    def summary(self) -> str:
        return f"{self._shown_answer()}\n{self._masks_line()}"

    def _mime_payload(self) -> Dict[str, Any]:
        # The overlay already travels as image/png beside it; do not send it twice.
        return {k: v for k, v in self.payload.items() if k != "overlayPng"}

    def _html(self) -> str:
        answer, masks = self._shown_answer(), self._masks_line()
        parts = [f'<p style="white-space:pre-wrap">{html.escape(answer)}</p>', f"<p><em>{html.escape(masks)}</em></p>"]
        if self.payload.get("overlayPng"):
            parts.append(
                f'<img src="data:image/png;base64,{self.payload["overlayPng"]}" '
                f'alt="{html.escape(masks, quote=True)}" style="max-width:100%">'
            )
        return "<div>" + "".join(parts) + "</div>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle: Dict[str, Any] = {RESULT_MIME: self._mime_payload(), "text/html": self._html()}
        if self.payload.get("overlayPng"):
            bundle["image/png"] = self.payload["overlayPng"]
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return f"<SegmentResult {len(self)} mask(s): {self.text.strip()[:80]!r}>"
