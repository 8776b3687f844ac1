"""The sam_prompt_decoder graph (refining a mask with points and a box) against SAM's own PromptEncoder with LISA's
text embedding appended (lisa_export.refine.refine_reference), and its goldens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import COMMITTED, FIXTURES, layout_seed_of, report, tiny_model
from lisa_export.graphs import SamPromptDecoder
from lisa_export.model import postprocess_masks
from lisa_export.ort_run import OrtBundle
from lisa_export.reference import load_image, rle_of, sam_preprocess
from lisa_export.refine import golden_prompts, graph_prompt, refine_reference, vit_h_prompt_decoder
from pycocotools import mask as mask_util

BUNDLES = [pytest.param(FIXTURES / name, id=name) for name in COMMITTED]


def _mask_iou(a: dict, b: dict) -> float:
    ra = {"size": a["rle"]["size"], "counts": a["rle"]["counts"].encode()}
    rb = {"size": b["rle"]["size"], "counts": b["rle"]["counts"].encode()}
    if a["area"] == 0 and b["area"] == 0:
        return 1.0
    return float(mask_util.iou([ra], [rb], [0])[0][0])


def _case_with_mask(bundle):
    g = json.loads((bundle / "goldens.json").read_text())
    return next(c for c in g["cases"] if c["masks"]), g


def _inputs(bundle, lisa, case):
    sam_pv, resize_size, orig_size = sam_preprocess(load_image(bundle / case["image"]))
    with torch.no_grad():
        img_emb = lisa.image_encoder(torch.from_numpy(sam_pv))
    seg = torch.tensor(case["seg_embeddings"][:1], dtype=torch.float32)
    return img_emb, seg, resize_size, orig_size


def _with_masks(o: dict, resize_size, orig_size) -> dict:
    """The graph's outputs plus `masks`: its low_res_masks through LISA's postprocess_masks, which the host does for
    this graph (src/host/mask-upsample.ts, checked against the goldens in test/host/refine.test.ts)."""
    masks = postprocess_masks(torch.from_numpy(o["low_res_masks"]), resize_size, orig_size)
    return {**o, "masks": masks.numpy()}


def _run_graph(ob, img_emb, seg, points, labels, box, resize_size, orig_size):
    coords, labs = graph_prompt(points, labels, box)
    o = ob.run(
        "sam_prompt_decoder",
        image_embeddings=img_emb.numpy(),
        seg_embeddings=seg.numpy(),
        point_coords=coords,
        point_labels=labs,
        resize_size=np.array(resize_size, np.int64),
        orig_size=np.array(orig_size, np.int64),
    )
    return _with_masks(o, resize_size, orig_size)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_prompt_decoder_matches_sam_prompt_encoder(bundle):
    lisa, *_ = tiny_model(*layout_seed_of(bundle))
    ob = OrtBundle(bundle)
    case, _ = _case_with_mask(bundle)
    img_emb, seg, rs, os_ = _inputs(bundle, lisa, case)
    worst = 0.0
    for p in golden_prompts(*os_):
        o = _run_graph(ob, img_emb, seg, p["points"], p["labels"], p["box"], rs, os_)
        ref, iou = refine_reference(
            lisa.prompt_encoder, lisa.mask_decoder, img_emb, seg, p["points"], p["labels"], p["box"], rs, os_
        )
        diff = float(np.max(np.abs(o["masks"] - ref.numpy())))
        worst = max(worst, diff)
        assert diff < 1e-3, (p["name"], diff)
        assert abs(float(o["iou_predictions"][0, 0]) - float(iou[0, 0])) < 1e-4, p["name"]
        a, b = o["masks"][0, 0] > 0, ref.numpy()[0, 0] > 0
        agree = (a == b).mean()
        assert agree > 0.999, (p["name"], agree)
    report(
        f"sam_prompt_decoder vs SAM's PromptEncoder + LISA text embedding, {bundle.name}: max |logit diff| {worst:.2e}"
    )


@pytest.mark.parametrize("bundle", BUNDLES)
def test_no_prompt_is_lisas_mask(bundle):
    """Zero points and no box: the same mask as the sam_mask_decoder graph that segment uses."""
    lisa, *_ = tiny_model(*layout_seed_of(bundle))
    ob = OrtBundle(bundle)
    case, _ = _case_with_mask(bundle)
    img_emb, _, rs, os_ = _inputs(bundle, lisa, case)
    seg = torch.tensor(case["seg_embeddings"], dtype=torch.float32)  # every mask of the case at once
    plain = ob.run(
        "sam_mask_decoder",
        image_embeddings=img_emb.numpy(),
        seg_embeddings=seg.numpy(),
        resize_size=np.array(rs, np.int64),
        orig_size=np.array(os_, np.int64),
    )
    o = ob.run(
        "sam_prompt_decoder",
        image_embeddings=img_emb.numpy(),
        seg_embeddings=seg.numpy(),
        point_coords=np.zeros((seg.shape[0], 0, 2), np.float32),
        point_labels=np.zeros((seg.shape[0], 0), np.float32),
        resize_size=np.array(rs, np.int64),
        orig_size=np.array(os_, np.int64),
    )
    assert float(np.max(np.abs(o["low_res_masks"] - plain["low_res_masks"]))) < 1e-5
    o = _with_masks(o, rs, os_)
    # The same upsampling on both: ONNX Runtime's Resize (in sam_mask_decoder) rounds a pixel or two to the other
    # side of 0 where PyTorch's does not.
    same = _with_masks(plain, rs, os_)["masks"]
    assert np.array_equal(o["masks"] > 0, same > 0)
    assert float(np.max(np.abs(o["masks"] - same))) < 1e-5
    assert float(np.max(np.abs(o["iou_predictions"] - plain["iou_predictions"]))) < 1e-6


@pytest.mark.parametrize("bundle", BUNDLES)
def test_refine_goldens(bundle):
    """goldens.json's refine cases: ONNX Runtime gives each expected mask, and the prompts do change the mask."""
    lisa, *_ = tiny_model(*layout_seed_of(bundle))
    ob = OrtBundle(bundle)
    g = json.loads((bundle / "goldens.json").read_text())
    cases = {c["name"]: c for c in g["cases"]}
    assert {r["name"].split("/")[1] for r in g["refine"]} == {"point", "negative-point", "box", "point-box"}
    changed = 0
    for r in g["refine"]:
        case = cases[r["case"]]
        img_emb, seg, rs, os_ = _inputs(bundle, lisa, case)
        o = _run_graph(ob, img_emb, seg, r["points"], r["labels"], r["box"], rs, os_)
        got = rle_of(o["masks"][0, 0] > 0)
        assert _mask_iou(got, r["mask"]) >= 0.999, r["name"]
        assert abs(float(o["iou_predictions"][0, 0]) - r["iou"]) < 1e-4, r["name"]
        changed += _mask_iou(got, case["masks"][r["mask_index"]]) < 0.99
    assert changed >= len(g["refine"]) // 2, (
        "the prompts hardly change the masks: the goldens would not catch a graph that ignores them"
    )


def test_folded_attention_matches_sam_at_vit_h_dims():
    """SamPromptDecoder (cross attentions' image-side projections folded onto the tokens, graphs.token_to_image and
    image_to_token) against SAM's own MaskDecoder at ViT-H's prompt-side dims (8 heads of 16; random weights), for
    prompts of 8 to 11 tokens and two masks at once: the same logits up to summation order."""
    pe, md = vit_h_prompt_decoder(seed=3)
    dec = SamPromptDecoder(pe, md).eval()
    g = torch.Generator().manual_seed(4)
    img_emb = torch.randn(1, 256, 64, 64, generator=g) * 0.5
    rs, os_ = (768, 1024), (768, 1024)
    worst = 0.0
    for points, labels, box in [
        ([[400, 300]], [1], None),
        ([[100, 200], [600, 500]], [1, 0], None),
        ([], [], [100, 80, 800, 700]),
        ([[500, 400], [200, 100], [900, 600]], [1, 0, 1], [100, 80, 800, 700]),
    ]:
        seg = torch.randn(2, 256, generator=g)
        coords, labs = graph_prompt(points, labels, box)
        with torch.no_grad():
            iou, low_res = dec(
                img_emb,
                seg,
                torch.from_numpy(coords).expand(2, -1, -1),
                torch.from_numpy(labs).expand(2, -1),
                torch.tensor(rs),
                torch.tensor(os_),
            )
        for i in range(2):
            ref, ref_iou = refine_reference(pe, md, img_emb, seg[i : i + 1], points, labels, box, rs, os_)
            got = postprocess_masks(low_res[i : i + 1], rs, os_)
            diff = float((got - ref).abs().max())
            worst = max(worst, diff)
            assert diff < 1e-4, (points, box, diff)
            assert abs(float(iou[i, 0]) - float(ref_iou[0, 0])) < 1e-5
            assert torch.equal(got > 0, ref > 0) or float(((got > 0) != (ref > 0)).float().mean()) < 1e-5
    report(f"sam_prompt_decoder (folded attention) vs SAM's MaskDecoder at ViT-H dims: max |logit diff| {worst:.2e}")
