"""Reference outputs for the image tests, from LISA's own image stack: OpenCV 4.8 (cv2.imread) and Pillow 9.4.0.

Usage: models/export/lisa-pins/venv run test/helpers/pillow_ref.py JOBS.json
JOBS.json is a list of jobs; each writes its output files and the script prints one JSON line per job ({"ok": true}
or {"error": "..."}), in order. Raw files are 8-bit RGB (or float32 little-endian for tensors), row-major.

ops:
  resize  {in, w, h, ow, oh, filter: bicubic|bilinear, out}            Pillow Image.resize of raw RGB
  decode  {file, out, meta}     Pillow's view of a file: exif_transpose, first frame, convert('RGB'); meta: {w, h, mode}
  cv2     {file, out, meta}     chat.py's decode: cv2.imread(file) then BGR -> RGB; meta: {w, h, versions}; an image
                                OpenCV cannot read is an error
  clip    {in, w, h, spec, out, out_u8}   transformers CLIPImageProcessor steps in numpy on Pillow's resize
  sam     {in, w, h, spec, out, out_u8, meta}  segment_anything ResizeLongestSide + Sam.preprocess in numpy
"""

import json
import sys

import numpy as np
from PIL import Image, ImageOps

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def load_raw(job):
    a = np.fromfile(job["in"], dtype=np.uint8).reshape(job["h"], job["w"], 3)
    return Image.fromarray(a)


def op_resize(job):
    im = load_raw(job).resize((job["ow"], job["oh"]), FILTERS[job["filter"]])
    np.asarray(im).tofile(job["out"])


def op_decode(job):
    im = Image.open(job["file"])
    mode0 = im.mode
    im.seek(0)
    im = ImageOps.exif_transpose(im)
    rgb = im.convert("RGB")
    np.asarray(rgb).tofile(job["out"])
    with open(job["meta"], "w") as f:
        json.dump({"w": rgb.width, "h": rgb.height, "mode": mode0}, f)


def op_cv2(job):
    import cv2
    import PIL

    bgr = cv2.imread(job["file"], cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cv2.imread cannot read {job['file']}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.tofile(job["out"])
    with open(job["meta"], "w") as f:
        json.dump(
            {"w": rgb.shape[1], "h": rgb.shape[0], "versions": f"OpenCV {cv2.__version__}, Pillow {PIL.__version__}"}, f
        )


def op_clip(job):
    spec = job["spec"]
    im = load_raw(job)
    # transformers get_resize_output_image_size (shortest_edge), PIL resize, center_crop, rescale, normalize
    w, h = im.size
    size = spec["shortest_edge"]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nh, nw = (new_long, new_short) if w <= h else (new_short, new_long)
    im = im.resize((nw, nh), FILTERS[spec["resample"]])
    a = np.asarray(im)
    ch, cw = spec["crop"]
    top, left = (nh - ch) // 2, (nw - cw) // 2
    a = a[top : top + ch, left : left + cw]
    a.tofile(job["out_u8"])
    x = (a * spec["rescale"]).astype(np.float32)
    x = (x - np.array(spec["mean"], dtype=np.float32)) / np.array(spec["std"], dtype=np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype("<f4")
    x.tofile(job["out"])


def op_sam(job):
    spec = job["spec"]
    im = load_raw(job)
    w, h = im.size
    L = spec["long_side"]
    scale = L * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    a = np.asarray(im.resize((neww, newh), FILTERS[spec["resample"]]))
    a.tofile(job["out_u8"])
    x = a.transpose(2, 0, 1).astype(np.float32)  # torch: uint8 tensor - float32 tensor -> float32
    mean = np.array(spec["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.array(spec["std"], dtype=np.float32).reshape(3, 1, 1)
    x = (x - mean) / std
    out = np.zeros((1, 3, L, L), dtype="<f4")
    out[0, :, :newh, :neww] = x
    out.tofile(job["out"])
    with open(job["meta"], "w") as f:
        json.dump({"resize_size": [newh, neww]}, f)


OPS = {"resize": op_resize, "decode": op_decode, "cv2": op_cv2, "clip": op_clip, "sam": op_sam}


def main():
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        try:
            OPS[job["op"]](job)
            print(json.dumps({"ok": True}), flush=True)
        except Exception as e:  # reported per job so one bad input does not hide the others
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
