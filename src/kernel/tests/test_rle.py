"""The pure-Python COCO RLE codec against pycocotools, and the package's import boundary (stdlib + IPython, numpy
optional, never torch)."""

import ast
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as cocomask
import pytest
from conftest import BUNDLE, KERNEL_PKG, goldens

from reason_segment import rle


def random_masks(seed: int):
    rng = np.random.default_rng(seed)
    for h, w in [(1, 1), (1, 7), (5, 1), (3, 4), (17, 23), (64, 48)]:
        yield (rng.random((h, w)) < rng.random()).astype(np.uint8)
    yield np.zeros((10, 12), np.uint8)
    yield np.ones((10, 12), np.uint8)
    big = np.zeros((300, 451), np.uint8)
    big[40:260, 100:400] = 1  # long runs: multi-group varints and negative deltas
    big[0, 0] = 1
    yield big


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_and_encode_match_pycocotools(seed):
    for m in random_masks(seed):
        ref = cocomask.encode(np.asfortranarray(m))
        counts = ref["counts"].decode("ascii")
        ours = {"size": [int(v) for v in ref["size"]], "counts": counts}
        assert np.array_equal(rle.decode_numpy(ours), m.astype(bool))
        rows = rle.decode_rows(ours)
        assert [list(r) for r in rows] == m.tolist()
        assert rle.encode(m.tolist())["counts"] == counts
        assert rle.encode(m)["counts"] == counts
        assert rle.area(ours) == int(m.sum())


def test_golden_masks_decode_like_pycocotools():
    cases = [c for c in goldens() if c["masks"]]
    assert cases
    for case in cases:
        for gm in case["masks"]:
            ref = cocomask.decode({"size": gm["rle"]["size"], "counts": gm["rle"]["counts"].encode()})
            assert np.array_equal(rle.decode_numpy(gm["rle"]), ref.astype(bool))
            assert rle.area(gm["rle"]) == gm["area"]


def test_bad_strings_are_refused():
    with pytest.raises(ValueError):
        rle.decode({"size": [2, 2], "counts": "3"})  # covers 3 pixels of 4
    with pytest.raises(ValueError):
        rle.counts_from_string("a")  # continuation bit set, then nothing


def test_result_masks_without_numpy():
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import json, reason_segment.result as r\n"
        "assert not r.HAVE_NUMPY\n"
        "c = [c for c in json.load(open(sys.argv[1]))['cases'] if c['masks']][0]\n"
        "res = r.SegmentResult({'masks': [{'rle': m['rle']} for m in c['masks']]})\n"
        "print([sum(map(sum, m)) for m in res.masks] == [m['area'] for m in c['masks']])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.join(BUNDLE, "goldens.json")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=KERNEL_PKG),
        check=True,
    )
    assert out.stdout.strip() == "True", out.stderr


def test_package_imports_only_stdlib_and_ipython():
    allowed = set(sys.stdlib_module_names) | {"IPython", "numpy", "reason_segment", "__future__"}
    pkg = os.path.join(KERNEL_PKG, "reason_segment")
    for name in sorted(os.listdir(pkg)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(pkg, name), encoding="utf-8").read())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            for m in mods:
                assert m.split(".")[0] in allowed, f"{name} imports {m}"
