"""Reference answers from the real pycocotools for the TypeScript RLE tests.

Reads one JSON document on stdin: {"cases": [case, ...]} and writes {"results": [result, ...]} on stdout, one result
per case, in order. Masks travel as base64 of row-major uint8 bytes (h*w), nonzero = in.

Cases:
  {"op": "encode", "h", "w", "mask"}           -> {"counts", "area", "bbox"}   (mask.encode of the Fortran array)
  {"op": "decode", "rle": {"size", "counts"}}   -> {"mask"}                     (row-major 0/1 bytes, base64)
  {"op": "iou", "a": rle, "b": rle}             -> {"iou"}                      (mask.iou([a], [b], [0]))
  {"op": "compress", "size", "counts": [...]}   -> {"counts", "area", "bbox"}   (frPyObjects of an uncompressed RLE)
  {"op": "photo", "name", "h", "w", "threshold", "channel"?}
      -> {"mask", "counts", "area", "bbox"}: a real photograph from scikit-image's data folder, resized with
         Pillow to w x h, one channel (or luminance) thresholded; real object-like shapes at photo size.
"""

import base64
import json
import os
import sys

import numpy as np
from pycocotools import mask as mask_utils


def _mask(case):
    h, w = case["h"], case["w"]
    m = np.frombuffer(base64.b64decode(case["mask"]), dtype=np.uint8)
    assert m.size == h * w, (m.size, h, w)
    return (m.reshape(h, w) != 0).astype(np.uint8)


def _rle(r):
    return {"size": list(r["size"]), "counts": r["counts"].encode()}


def _encode(m):
    rle = mask_utils.encode(np.asfortranarray(m))
    return {
        "counts": rle["counts"].decode(),
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


def _photo(case):
    import skimage
    from PIL import Image

    path = os.path.join(os.path.dirname(skimage.__file__), "data", case["name"])
    img = Image.open(path)
    img = img.convert("RGB").resize((case["w"], case["h"]), Image.BILINEAR)
    a = np.asarray(img)
    ch = case.get("channel")
    v = a.mean(axis=2) if ch is None else a[:, :, ch].astype(np.float64)
    m = (v > case["threshold"]).astype(np.uint8)
    out = _encode(m)
    out["mask"] = base64.b64encode(np.ascontiguousarray(m).tobytes()).decode()
    return out


def run(case):
    op = case["op"]
    if op == "encode":
        return _encode(_mask(case))
    if op == "decode":
        m = mask_utils.decode(_rle(case["rle"]))
        return {"mask": base64.b64encode(np.ascontiguousarray(m).tobytes()).decode()}
    if op == "iou":
        v = mask_utils.iou([_rle(case["a"])], [_rle(case["b"])], [0])
        return {"iou": float(np.asarray(v).reshape(-1)[0]) if np.asarray(v).size else 0.0}
    if op == "compress":
        h, w = case["size"]
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": case["counts"]}, h, w)
        return {
            "counts": rle["counts"].decode(),
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        }
    if op == "photo":
        return _photo(case)
    raise ValueError(f"unknown op {op!r}")


def main():
    doc = json.load(sys.stdin)
    json.dump({"results": [run(c) for c in doc["cases"]]}, sys.stdout)


if __name__ == "__main__":
    main()
