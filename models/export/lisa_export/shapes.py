"""A procedural reasoning-segmentation data set in ReasonSeg's on-disk format.

`npm run shapes -- --seed N --count K --out DIR` writes DIR/<id>.jpg and DIR/<id>.json for K scenes of 2 to 6 flat
shapes (circle, square, triangle, star, hexagon, ring; one of each kind at most, so a kind names one object) in six
colours and several sizes on noise, gradients or crops of the fixture photographs.

Each JSON is what LISA's utils/data_processing.py get_mask_from_json reads: ``text`` (instructions that all point at
the same target), ``is_sentence``, and ``shapes`` (integer polygons labelled ``target`` or ``ignore``; a ring is one
keyhole polygon, so its hole stays background).  Extra keys, which LISA ignores: ``answers`` (an explanatory answer per
text, one ``[SEG]`` per target object), ``seg_shapes`` (per answer, the index into ``shapes`` of each ``[SEG]``'s
object), ``keywords`` (per text, the object names a correct answer must contain) and ``lang``.

Masks are rasterised by ``polygon_mask`` (cv2.polylines thickness 1 + cv2.fillPoly on integer points, transcribed
without OpenCV); the shapes are painted through the same masks, so the ground truth is exactly the painted pixels.
Same seed and count -> byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
PHOTOS = ["astronaut.png", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "camera-gray.png"]

KINDS = ["circle", "square", "triangle", "star", "hexagon", "ring"]
KIND_ZH = {
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "star": "星形",
    "hexagon": "六边形",
    "ring": "圆环",
}
CORNERS = {"triangle": 3, "square": 4, "hexagon": 6, "star": 10}
CORNERS_EN = {3: "three", 4: "four", 6: "six", 10: "ten"}
CORNERS_ZH = {3: "三", 4: "四", 6: "六", 10: "十"}
ROLLS = ("circle", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}
COLOUR_ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"}
NUM_EN = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
NUM_ZH = {2: "两", 3: "三", 4: "四", 5: "五", 6: "六"}


# ---------------------------------------------------------------------------------------------------------------------
# Rasterising polygons as LISA's get_mask_from_json does
# ---------------------------------------------------------------------------------------------------------------------


def _line_pixels(x0: int, y0: int, x1: int, y1: int):
    """8-connected Bresenham line, both ends included (cv2.polylines with thickness 1)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def polygon_mask(points, h: int, w: int) -> np.ndarray:
    """uint8 [h,w]: 1 on the closed polygon's outline (8-connected lines, cv2.polylines thickness 1) and inside it
    (pixel centre (x, y) inside iff an odd number of edge crossings of row y lie at or left of x).  Points are
    truncated to int32 first, as np.array(points, dtype=np.int32) does in get_mask_from_json.  src/host/eval.ts
    rasterises with the same rule."""
    pts = np.array(points, dtype=np.float64).astype(np.int32).astype(np.int64)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    toggle = np.zeros((h, w + 1), np.int32)
    for a, b, c, d in zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), strict=False):
        if b == d:
            continue
        ys = np.arange(max(min(b, d), 0), min(max(b, d), h))
        if ys.size == 0:
            continue
        xc = np.ceil(a + (ys - b) * (c - a) / (d - b)).astype(np.int64)
        np.add.at(toggle, (ys, np.clip(xc, 0, w)), 1)
    m = (np.cumsum(toggle, axis=1)[:, :w] % 2).astype(np.uint8)
    for a, b, c, d in zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), strict=False):
        for x, y in _line_pixels(a, b, c, d):
            if 0 <= x < w and 0 <= y < h:
                m[y, x] = 1
    return m


def mask_from_json(anno: dict, h: int, w: int) -> np.ndarray:
    """get_mask_from_json: polygons drawn largest first; 1 for targets, 255 for labels containing 'ignore'."""
    polys = [s for s in anno["shapes"] if s["label"].lower() != "flag"]
    areas = [int(polygon_mask(s["points"], h, w).sum()) for s in polys]
    order = list(np.argsort(areas)[::-1])
    out = np.zeros((h, w), np.uint8)
    for i in order:
        s = polys[i]
        out[polygon_mask(s["points"], h, w) == 1] = 255 if "ignore" in s["label"].lower() else 1
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Shape:
    kind: str
    colour: str
    cx: float
    cy: float
    r: float
    rot: float
    faint: bool = False

    def polygon(self) -> list[list[int]]:
        def ring_pts(rad: float, k: int, start: float, sign: int = 1):
            return [
                (
                    self.cx + rad * math.cos(start + sign * 2 * math.pi * i / k),
                    self.cy + rad * math.sin(start + sign * 2 * math.pi * i / k),
                )
                for i in range(k)
            ]

        if self.kind == "circle":
            pts = ring_pts(self.r, 48, 0.0)
        elif self.kind == "square":
            pts = ring_pts(self.r * 1.25, 4, self.rot + math.pi / 4)
        elif self.kind == "triangle":
            pts = ring_pts(self.r * 1.3, 3, self.rot - math.pi / 2)
        elif self.kind == "hexagon":
            pts = ring_pts(self.r * 1.1, 6, self.rot)
        elif self.kind == "star":
            outer = ring_pts(self.r * 1.35, 5, self.rot - math.pi / 2)
            inner = ring_pts(self.r * 0.55, 5, self.rot - math.pi / 2 + math.pi / 5)
            pts = [p for pair in zip(outer, inner, strict=False) for p in pair]
        elif self.kind == "ring":
            # keyhole: the outer circle, a bridge to the inner circle, the inner circle the other way round, back
            outer = ring_pts(self.r, 48, 0.0)
            inner = ring_pts(self.r * 0.55, 32, 0.0, -1)
            pts = outer + [outer[0]] + inner + [inner[0]]
        else:
            raise ValueError(self.kind)
        return [[int(round(x)), int(round(y))] for x, y in pts]

    @property
    def area(self) -> float:
        return {
            "circle": math.pi,
            "square": 2 * 1.25**2,
            "triangle": 3 * math.sqrt(3) / 4 * 1.3**2,
            "hexagon": 3 * math.sqrt(3) / 2 * 1.1**2,
            "star": 5 * 1.35 * 0.55 * math.sin(math.pi / 5),
            "ring": math.pi * (1 - 0.55**2),
        }[self.kind] * self.r**2


# ---------------------------------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------------------------------


def _photo_cache() -> list[np.ndarray]:
    out = []
    for name in PHOTOS:
        with Image.open(REPO / "test" / "fixtures" / "images" / name) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def background(rng: random.Random, h: int, w: int, photos: list[np.ndarray]) -> np.ndarray:
    kind = rng.choice(["noise", "gradient", "photo"])
    nrng = np.random.default_rng(rng.getrandbits(32))
    if kind == "noise":
        base = np.array([rng.randint(90, 200) for _ in range(3)], np.float32)
        img = base + nrng.normal(0, rng.uniform(8, 30), (h, w, 3))
    elif kind == "gradient":
        a = np.array([rng.randint(60, 230) for _ in range(3)], np.float32)
        b = np.array([rng.randint(60, 230) for _ in range(3)], np.float32)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        img = a + (b - a) * t[..., None]
    else:
        p = rng.choice(photos)
        ph, pw = p.shape[:2]
        ch, cw = min(ph, h), min(pw, w)
        y0, x0 = rng.randint(0, ph - ch), rng.randint(0, pw - cw)
        crop = Image.fromarray(p[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BILINEAR)
        # washed out towards grey so that flat saturated shapes stand out from it, as objects do in a photo
        img = np.asarray(crop, np.float32) * 0.5 + 64
    return np.clip(img, 0, 255)


# ---------------------------------------------------------------------------------------------------------------------
# Instructions and answers
# ---------------------------------------------------------------------------------------------------------------------


def _en_name(s: Shape, colour: bool = True) -> str:
    return f"{s.colour} {s.kind}" if colour else s.kind


def _zh_name(s: Shape, colour: bool = True) -> str:
    return f"{COLOUR_ZH[s.colour]}的{KIND_ZH[s.kind]}" if colour else KIND_ZH[s.kind]


def _list_en(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _list_zh(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "、".join(parts[:-1]) + "和" + parts[-1]


def tasks(shapes: list[Shape]) -> list[dict]:
    """Every instruction family that has a unique answer in this scene: {family, targets, is_sentence, texts:
    [(lang, text, answer, keywords)]}.  The answer's [SEG]s follow the order of ``targets``."""
    solid = [s for s in shapes if not s.faint]
    out = []
    for s in solid:  # naming (a phrase, as ReasonSeg's non-sentence entries)
        out.append(
            {
                "family": "name",
                "targets": [s],
                "is_sentence": False,
                "texts": [
                    ("en", f"the {_en_name(s)}", f"It is the {_en_name(s)} [SEG].", [s.kind]),
                    ("zh", _zh_name(s), f"这是{_zh_name(s)} [SEG]。", [KIND_ZH[s.kind]]),
                ],
            }
        )
    polys = [s for s in solid if s.kind in CORNERS]
    if len(polys) >= 2:
        t = max(polys, key=lambda s: CORNERS[s.kind])
        n = CORNERS[t.kind]
        out.append(
            {
                "family": "corners",
                "targets": [t],
                "is_sentence": True,
                "texts": [
                    (
                        "en",
                        "Which shape has the most corners?",
                        f"It is the {t.kind}, which has {CORNERS_EN[n]} corners [SEG].",
                        [t.kind],
                    ),
                    (
                        "zh",
                        "哪个形状的角最多？",
                        f"是{KIND_ZH[t.kind]}，它有{CORNERS_ZH[n]}个角 [SEG]。",
                        [KIND_ZH[t.kind]],
                    ),
                ],
            }
        )
    by_size = sorted(solid, key=lambda s: -s.area)
    if len(by_size) >= 2 and by_size[0].area > 1.3 * by_size[1].area:
        t = by_size[0]
        out.append(
            {
                "family": "largest",
                "targets": [t],
                "is_sentence": True,
                "texts": [
                    (
                        "en",
                        "Segment the largest object in the picture.",
                        f"The largest object is the {_en_name(t)} [SEG].",
                        [t.kind],
                    ),
                    ("zh", "请分割图中最大的物体。", f"最大的物体是{_zh_name(t)} [SEG]。", [KIND_ZH[t.kind]]),
                ],
            }
        )
    for colour in COLOURS:
        same = [s for s in solid if s.colour == colour]
        if len(same) >= 2:
            same = sorted(same, key=lambda s: -s.area)
            if same[0].area > 1.3 * same[1].area:
                t = same[0]
                out.append(
                    {
                        "family": "largest-colour",
                        "targets": [t],
                        "is_sentence": True,
                        "texts": [
                            (
                                "en",
                                f"Which is the largest {colour} object?",
                                f"It is the {t.kind}, the largest {colour} object [SEG].",
                                [t.kind],
                            ),
                            (
                                "zh",
                                f"哪个是最大的{COLOUR_ZH[colour]}物体？",
                                f"是{KIND_ZH[t.kind]}，它是最大的{COLOUR_ZH[colour]}物体 [SEG]。",
                                [KIND_ZH[t.kind]],
                            ),
                        ],
                    }
                )
            ts = sorted(same, key=lambda s: s.cx)
            n = len(ts)
            out.append(
                {
                    "family": "all-colour",
                    "targets": ts,
                    "is_sentence": True,
                    "texts": [
                        (
                            "en",
                            f"Segment all the {colour} shapes.",
                            f"There are {NUM_EN[n]} {colour} shapes: "
                            + _list_en([f"the {s.kind} [SEG]" for s in ts])
                            + ".",
                            [s.kind for s in ts],
                        ),
                        (
                            "zh",
                            f"请分割所有{COLOUR_ZH[colour]}的形状。",
                            f"有{NUM_ZH[n]}个{COLOUR_ZH[colour]}的形状："
                            + _list_zh([f"{KIND_ZH[s.kind]} [SEG]" for s in ts])
                            + "。",
                            [KIND_ZH[s.kind] for s in ts],
                        ),
                    ],
                }
            )
    for ref in solid:  # the nearest shape on the left of another, when it is clearly the nearest
        left = sorted([s for s in solid if s is not ref and s.cx < ref.cx - ref.r], key=lambda s: -s.cx)
        if left and (len(left) == 1 or left[0].cx - left[1].cx > 0.5 * left[0].r):
            t = left[0]
            out.append(
                {
                    "family": "left-of",
                    "targets": [t],
                    "is_sentence": True,
                    "texts": [
                        (
                            "en",
                            f"What is just to the left of the {ref.kind}?",
                            f"It is the {_en_name(t)}, just left of the {ref.kind} [SEG].",
                            [t.kind],
                        ),
                        (
                            "zh",
                            f"{KIND_ZH[ref.kind]}左边紧挨着的是什么？",
                            f"是{_zh_name(t)}，在{KIND_ZH[ref.kind]}的左边 [SEG]。",
                            [KIND_ZH[t.kind]],
                        ),
                    ],
                }
            )
    rollers = sorted([s for s in solid if s.kind in ROLLS], key=lambda s: s.cx)
    if rollers:
        if len(rollers) == 1:
            t = rollers[0]
            en = f"The {t.kind} could roll, because it is round [SEG]."
            zh = f"{KIND_ZH[t.kind]}是圆的，可以滚动 [SEG]。"
        else:
            en = f"The {rollers[0].kind} [SEG] and the {rollers[1].kind} [SEG] could roll, because they are round."
            zh = f"{KIND_ZH[rollers[0].kind]} [SEG]和{KIND_ZH[rollers[1].kind]} [SEG]是圆的，可以滚动。"
        out.append(
            {
                "family": "roll",
                "targets": rollers,
                "is_sentence": True,
                "texts": [
                    ("en", "Segment something you could roll.", en, [s.kind for s in rollers]),
                    ("zh", "请分割可以滚动的东西。", zh, [KIND_ZH[s.kind] for s in rollers]),
                ],
            }
        )
    return out


def describe(shapes: list[Shape]) -> list[tuple[str, str, str]]:
    """A question about the whole scene and its answer, every solid shape from left to right: [(lang, question,
    answer)].  Not a segmentation task: the trainer mixes it in as LISA mixes VQA data into its segmentation data."""
    solid = sorted([s for s in shapes if not s.faint], key=lambda s: s.cx)
    return [
        (
            "en",
            "What shapes are in this image, from left to right?",
            "From left to right: " + _list_en([f"a {_en_name(s)}" for s in solid]) + ".",
        ),
        ("zh", "图中从左到右有哪些形状？", "从左到右：" + _list_zh([_zh_name(s) for s in solid]) + "。"),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------------------------


def _place(rng: random.Random, n: int, h: int, w: int) -> list[tuple[float, float, float]] | None:
    """n non-overlapping discs inside the central square of the image (CLIP sees only that square)."""
    side = min(h, w)
    ox, oy = (w - side) / 2, (h - side) / 2
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(200):
            r = rng.uniform(0.06, 0.13) * side
            m = 1.4 * r + 4
            cx, cy = ox + rng.uniform(m, side - m), oy + rng.uniform(m, side - m)
            if all(math.hypot(cx - x, cy - y) > 1.4 * (r + rr) + 6 for x, y, rr in placed):
                placed.append((cx, cy, r))
                break
        else:
            return None
    return placed


def scene(rng: random.Random, photos: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    img, anno, _ = scene_shapes(rng, photos)
    return img, anno


def scene_shapes(rng: random.Random, photos: list[np.ndarray]) -> tuple[np.ndarray, dict, list[Shape]]:
    """scene() and every solid shape in it (targets or not): SAM's pre-training segments each of them."""
    side = rng.choice([384, 448, 512, 576, 640])
    h, w = rng.choice([(side, side), (side, side), (side, side), (side, side * 4 // 3), (side * 4 // 3, side)])
    while True:
        n = rng.randint(2, 6)
        spots = _place(rng, n + 1, h, w)
        if spots is not None:
            break
    kinds = rng.sample(KINDS, n)
    shapes = [
        Shape(k, rng.choice(list(COLOURS)), cx, cy, r, rng.uniform(0, 2 * math.pi))
        for k, (cx, cy, r) in zip(kinds, spots[:n], strict=False)
    ]
    faint = None
    if rng.random() < 0.2:  # a ghost of a shape: ambiguous, so marked ignore (as ReasonSeg marks unclear regions)
        cx, cy, r = spots[n]
        faint = Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), cx, cy, r * 0.7, rng.uniform(0, 2 * math.pi), True)
    img = background(rng, h, w, photos)
    for s in shapes + ([faint] if faint else []):
        m = polygon_mask(s.polygon(), h, w).astype(bool)
        col = np.array(COLOURS[s.colour], np.float32)
        img[m] = img[m] * 0.7 + col * 0.3 if s.faint else col
    by_family: dict[str, list[dict]] = {}
    for t in tasks(shapes):  # every family equally often, whatever the number of instances it has in the scene
        by_family.setdefault(t["family"], []).append(t)
    task = rng.choice(by_family[rng.choice(sorted(by_family))])
    anno_shapes = [
        {"label": "target", "points": t.polygon(), "shape_type": "polygon", "group_id": None, "flags": {}}
        for t in task["targets"]
    ]
    if faint is not None:
        anno_shapes.append(
            {"label": "ignore", "points": faint.polygon(), "shape_type": "polygon", "group_id": None, "flags": {}}
        )
    texts = list(task["texts"])
    rng.shuffle(texts)
    seg_shapes = []
    for _, _, ans, _ in texts:
        assert ans.count("[SEG]") == len(task["targets"]), ans
        seg_shapes.append(list(range(len(task["targets"]))))
    anno = {
        "text": [t[1] for t in texts],
        "is_sentence": task["is_sentence"],
        "shapes": anno_shapes,
        "answers": [t[2] for t in texts],
        "seg_shapes": seg_shapes,
        "keywords": [t[3] for t in texts],
        "lang": [t[0] for t in texts],
        "family": task["family"],
        "imageHeight": h,
        "imageWidth": w,
    }
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), anno, shapes


def write_split(seed: int, count: int, out: Path, log=print) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    photos = _photo_cache()
    rng = random.Random(f"lisa-shapes/{seed}")
    names = []
    for i in range(count):
        img, anno = scene(rng, photos)
        name = f"shapes-{seed}-{i:05d}"
        anno["imagePath"] = f"{name}.jpg"
        Image.fromarray(img).save(out / f"{name}.jpg", format="JPEG", quality=95)
        (out / f"{name}.json").write_text(json.dumps(anno, ensure_ascii=False) + "\n", encoding="utf-8")
        names.append(name)
        if log and (i + 1) % 100 == 0:
            log(f"{i + 1}/{count}")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lisa_export.shapes", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.count < 1:
        ap.error("--count must be at least 1")
    write_split(a.seed, a.count, a.out, log=lambda m: print(m, file=sys.stderr))
    print(f"wrote {a.count} scenes to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
