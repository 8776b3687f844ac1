"""The object a ``%%segment`` cell returns: the host's result payload with Python-friendly accessors.

It displays itself as the Reason Segment result MIME type (drawn by the VS Code renderer and the JupyterLab
extension). Frontends without a renderer show ONE other type of the bundle, the richest they know (JupyterLab and
nbconvert's HTML take ``text/markdown`` before ``image/png`` before ``text/plain``), so ``text/markdown`` carries the
answer, the mask list and the small overlay PNG together; ``image/png`` (that PNG, for exporters that take images
only: it says "NO MASK" on a result without masks) and ``text/plain`` stay beside it.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import png as _png
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

    def __init__(
        self,
        payload: Dict[str, Any],
        image_path: Optional[str] = None,
        refiner: Optional[Callable[[SegmentResult, int, Dict[str, Any]], Dict[str, Any]]] = None,
    ):
        self.payload = payload
        self.image_path = image_path
        self._refiner = refiner  # the magic's: asks the host that made this result (reasonSegment/refine)
        self._masks: Optional[List[Any]] = None
        self._fallback: Optional[str] = None

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

    @property
    def result_id(self) -> Optional[str]:
        """The host's name for this result while it remembers it (what refining asks about)."""
        return self.payload.get("resultId")

    @property
    def refined(self) -> List[Optional[Dict[str, Any]]]:
        """Per mask: the prompts it was refined with (``{"points", "labels", "box"?}``), or None for the model's own."""
        return [m.get("refined") for m in self.payload.get("masks", [])]

    def refine(
        self,
        mask: int = 0,
        points: Sequence[Sequence[float]] = (),
        labels: Optional[Sequence[int]] = None,
        box: Optional[Sequence[float]] = None,
    ) -> Any:
        """Refines mask ``mask`` with SAM's mask decoder: ``points`` are ``(x, y)`` pixels of the image, ``labels``
        1 (part of the object, the default) or 0 (not part) per point, ``box`` ``(x0, y0, x1, y1)``. The host reuses
        the image's cached embedding and the mask's [SEG] embedding, so no language model runs. The new mask replaces
        the old one here (``masks``, ``rles``, ``refined``...) and is returned as ``masks[mask]``. No points and no
        box gives the model's own mask back."""
        if self._refiner is None:
            raise ValueError("this result was not made by a %%segment cell of this kernel, so it cannot be refined")
        if not 0 <= mask < len(self):
            raise ValueError(f"mask {mask}: this result has {len(self)} mask(s)")
        pts = [[float(x), float(y)] for x, y in points]
        labs = [1] * len(pts) if labels is None else [int(v) for v in labels]
        prompt: Dict[str, Any] = {"points": pts, "labels": labs}
        if box is not None:
            prompt["box"] = [float(v) for v in box]
        self.set_mask(mask, self._refiner(self, mask, prompt))
        return self.masks[mask]

    def set_mask(self, index: int, mask: Dict[str, Any]) -> None:
        """Puts ``mask`` (a result mask document: rle, area, bbox, ``refined``...) in place of mask ``index``."""
        masks = self.payload.get("masks", [])
        if not 0 <= index < len(masks):
            raise ValueError(f"mask {index}: this result has {len(masks)} mask(s)")
        if not isinstance(mask, dict) or not isinstance(mask.get("rle"), dict):
            raise ValueError("a mask needs its COCO RLE in 'rle'")
        masks[index] = mask
        self._masks = None

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
            how = f" (refined: {_prompt_words(m['refined'])})" if m.get("refined") else ""
            parts.append(f"[SEG] {i}: {m.get('area', 0)} px at x={x} y={y} {w}x{h}{how}")
        return f"{n} mask{'s' if n != 1 else ''}: " + "; ".join(parts)

    def summary(self) -> str:
        return f"{self._shown_answer()}\n{self._masks_line()}"

    def _mime_payload(self) -> Dict[str, Any]:
        # The renderers draw from the masks and the image; the full-size overlay stays out of the notebook.
        return {k: v for k, v in self.payload.items() if k != "overlayPng"}

    @property
    def fallback_png(self) -> Optional[bytes]:
        """The overlay downscaled for notebook files (at most png.MAX_SIDE pixels a side), "NO MASK" on it when the
        model gave none; None without an overlay."""
        b64 = self._fallback_b64()
        return base64.b64decode(b64) if b64 else None

    def _fallback_b64(self) -> Optional[str]:
        if self._fallback is None and self.overlay_png is not None:
            self._fallback = base64.b64encode(_png.fallback_png(self.overlay_png, no_mask=not len(self))).decode()
        return self._fallback

    def _markdown(self) -> str:
        lines = [_md_escape(line) for line in self._shown_answer().splitlines()]
        md = "  \n".join(lines) + f"\n\n*{_md_escape(self._masks_line())}*\n"
        png = self._fallback_b64()
        if png:
            md += f"\n![{_md_escape(self._masks_line())}](data:image/png;base64,{png})\n"
            if any(self.refined):
                # The small picture is the host's overlay of the model's masks; the kernel cannot redraw the photo.
                md += "\n*" + _md_escape("The picture shows the masks as the model made them, before refining.") + "*\n"
        return md

    def fallback_bundle(self) -> Dict[str, Any]:
        """The types other than the result's own, as the cell shows them now (after refining, say)."""
        return {k: v for k, v in self._repr_mimebundle_().items() if k != RESULT_MIME}

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle: Dict[str, Any] = {RESULT_MIME: self._mime_payload(), "text/markdown": self._markdown()}
        png = self._fallback_b64()
        if png:
            bundle["image/png"] = png
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return f"<SegmentResult {len(self)} mask(s): {self.text.strip()[:80]!r}>"


def _prompt_words(p: Dict[str, Any]) -> str:
    labels = p.get("labels", [])
    pos, neg = sum(1 for v in labels if v == 1), sum(1 for v in labels if v == 0)
    words = [f"{pos} positive point(s)"] if pos else []
    words += [f"{neg} negative point(s)"] if neg else []
    return ", ".join(words + (["a box"] if p.get("box") else []))


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")


def _md_escape(text: str) -> str:
    """Text shown as written in markdown: every character markdown or its inline HTML would act on is escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))
