"""The shapes data set (lisa_export/shapes.py): deterministic, in ReasonSeg's format, masks on the painted pixels, and
answers whose [SEG]s match their targets."""

from __future__ import annotations

import json

import numpy as np
from lisa_export import shapes
from PIL import Image


def test_same_seed_same_bytes_other_seed_other_scenes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shapes.write_split(5, 4, a, log=None)
    shapes.write_split(5, 4, b, log=None)
    shapes.write_split(6, 4, c, log=None)
    files = sorted(p.name for p in a.iterdir())
    assert len(files) == 8 and files == sorted(p.name for p in b.iterdir())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "shapes-5-00000.json").read_text() != (c / "shapes-6-00000.json").read_text()


def test_reason_seg_format_and_masks_on_the_painted_shapes(tmp_path):
    shapes.write_split(9, 24, tmp_path, log=None)
    families, langs = set(), set()
    for j in sorted(tmp_path.glob("*.json")):
        anno = json.loads(j.read_text(encoding="utf-8"))
        assert isinstance(anno["text"], list) and isinstance(anno["is_sentence"], bool)
        assert {s["label"] for s in anno["shapes"]} <= {"target", "ignore"}
        assert all(s["shape_type"] == "polygon" and len(s["points"]) >= 3 for s in anno["shapes"])
        targets = [s for s in anno["shapes"] if s["label"] == "target"]
        for ans, seg, kw in zip(anno["answers"], anno["seg_shapes"], anno["keywords"], strict=False):
            assert ans.count("[SEG]") == len(seg) == len(targets) and all(k in ans for k in kw), ans
        families.add(anno["family"])
        langs.update(anno["lang"])
        img = np.asarray(Image.open(j.with_suffix(".jpg")).convert("RGB"), np.float32)
        assert img.shape[:2] == (anno["imageHeight"], anno["imageWidth"])
        for t in targets:  # every target pixel away from the edge carries one flat colour (JPEG noise aside)
            m = shapes.polygon_mask(t["points"], *img.shape[:2]).astype(bool)
            inner = m & np.roll(m, 2, 0) & np.roll(m, -2, 0) & np.roll(m, 2, 1) & np.roll(m, -2, 1)
            px = img[inner]
            assert px.std(0).max() < 12, (j.name, px.std(0))
            assert min(np.abs(px.mean(0) - np.array(c)).max() for c in shapes.COLOURS.values()) < 16
    assert langs == {"en", "zh"}
    assert len(families) >= 5, families


def test_ring_is_a_keyhole_with_an_empty_hole():
    ring = shapes.Shape("ring", "red", 60, 60, 40, 0.0)
    m = shapes.polygon_mask(ring.polygon(), 120, 120)
    assert m[60, 60] == 0 and m[60, 25] == 1 and m[25, 60] == 1 and m[0, 0] == 0
    area = m.sum()
    assert abs(area - ring.area) < 0.08 * ring.area, (area, ring.area)


def test_mask_from_json_marks_ignore_regions_255():
    anno = {
        "shapes": [
            {"label": "target", "points": [[2, 2], [12, 2], [12, 12], [2, 12]]},
            {"label": "ignore", "points": [[8, 8], [18, 8], [18, 18], [8, 18]]},
            {"label": "flag", "points": [[0, 0], [19, 0], [19, 19]]},
        ]
    }
    m = shapes.mask_from_json(anno, 20, 20)
    assert m[5, 5] == 1 and m[15, 15] == 255 and m[0, 19] == 0
    assert m[10, 10] == 1  # equal areas: np.argsort order, reversed, paints the target last


def test_scene_shapes_is_scene_plus_every_solid_shape_and_describe_lists_them_left_to_right():
    import random

    photos = shapes._photo_cache()
    img, anno = shapes.scene(random.Random("lisa-shapes/11"), photos)
    img2, anno2, solid = shapes.scene_shapes(random.Random("lisa-shapes/11"), photos)
    assert np.array_equal(img, img2) and anno == anno2  # the same stream: `npm run shapes` output is unchanged
    assert 2 <= len(solid) <= 6 and not any(s.faint for s in solid)
    targets = [t["points"] for t in anno["shapes"] if t["label"] == "target"]
    assert all(any(s.polygon() == t for s in solid) for t in targets)
    (lang_en, q_en, a_en), (lang_zh, _, a_zh) = shapes.describe(solid)
    assert (lang_en, lang_zh) == ("en", "zh") and q_en.endswith("from left to right?")
    order = sorted(solid, key=lambda s: s.cx)
    pos = [a_en.index(f"a {s.colour} {s.kind}") for s in order]
    assert pos == sorted(pos) and len(set(pos)) == len(solid)
    assert all(shapes.KIND_ZH[s.kind] in a_zh for s in solid)
