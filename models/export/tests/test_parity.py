"""ONNX Runtime (Python) against the PyTorch reference, for every graph of every fixture bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import COMMITTED, FIXTURES, layout_seed_of, report, tiny_model
from lisa_export.ort_run import OrtBundle
from lisa_export.reference import clip_preprocess, generate, load_image, sam_preprocess
from pycocotools import mask as mask_util

TOL = 1e-4


def bundles(fresh=None):
    return [pytest.param(FIXTURES / name, id=name) for name in COMMITTED]


def _maxdiff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def graph_diffs(bundle_dir) -> dict[str, float]:
    layout, seed = layout_seed_of(bundle_dir)
    lisa, tok, tokens, _, _ = tiny_model(layout, seed)
    ob = OrtBundle(bundle_dir)
    img = load_image(bundle_dir / "images" / "coffee.png")
    clip_pv = clip_preprocess(img)
    sam_pv, rs, os_ = sam_preprocess(img)
    d = {}
    with torch.no_grad():
        d["vision_encoder"] = _maxdiff(
            ob.run("vision_encoder", pixel_values=clip_pv)["image_features"],
            lisa.clip_features(torch.from_numpy(clip_pv)),
        )
        ids = np.array([[1, 5, 0, 17, tokens["seg"], tokens["im_end"], 2]], np.int64)
        d["embed_tokens"] = _maxdiff(
            ob.run("embed_tokens", input_ids=ids)["inputs_embeds"], lisa.llm.model.embed_tokens(torch.from_numpy(ids))
        )
        # decoder: prefill (P=0, a masked unk in the middle) then two cached steps, against HF's LlamaModel
        H = lisa.hidden_size
        g = torch.Generator().manual_seed(3)
        x = torch.randn(1, 12, H, generator=g)
        am = np.ones((1, 12), np.int64)
        am[0, 4] = 0
        ref = lisa.llm.model(
            inputs_embeds=x, attention_mask=torch.from_numpy(am), position_ids=torch.arange(12)[None], use_cache=False
        ).last_hidden_state
        worst_logit = worst_h = 0.0
        past = ob.empty_past()
        for lo, hi in ((0, 10), (10, 11), (11, 12)):
            o = ob.run(
                "decoder",
                inputs_embeds=x[:, lo:hi].numpy(),
                attention_mask=am[:, :hi],
                position_ids=np.arange(lo, hi, dtype=np.int64)[None],
                **past,
            )
            past = {n.replace("present", "past_key_values"): v for n, v in o.items() if n.startswith("present.")}
            worst_h = max(worst_h, _maxdiff(o["last_hidden_state"], ref[:, lo:hi]))
            # the decoder returns the logits of each step's last position only (older bundles: every position)
            worst_logit = max(worst_logit, _maxdiff(o["logits"][:, -1:], lisa.llm.lm_head(ref[:, hi - 1 : hi])))
        d["decoder.last_hidden_state"] = worst_h
        d["decoder.logits"] = worst_logit
        # the wrapper module itself equals HF too (what was traced)
        sh = torch.randn(3, H, generator=g)
        d["seg_projector"] = _maxdiff(
            ob.run("seg_projector", seg_hidden=sh.numpy())["seg_embeddings"], lisa.seg_project(sh)
        )
        img_t = lisa.image_encoder(torch.from_numpy(sam_pv))
        img_o = ob.run("sam_image_encoder", pixel_values=sam_pv)["image_embeddings"]
        d["sam_image_encoder"] = _maxdiff(img_o, img_t)
        C = lisa.sam_dims.out_chans
        worst = 0.0
        for n in (1, 3):
            se = torch.randn(n, C, generator=g)
            o = ob.run(
                "sam_mask_decoder",
                image_embeddings=img_t.numpy(),
                seg_embeddings=se.numpy(),
                resize_size=np.array(rs, np.int64),
                orig_size=np.array(os_, np.int64),
            )
            m, iou, low = lisa.sam_masks(img_t, se, rs, os_)
            worst = max(
                worst, _maxdiff(o["masks"], m), _maxdiff(o["low_res_masks"], low), _maxdiff(o["iou_predictions"], iou)
            )
            assert o["masks"].shape == (n, 1, os_[0], os_[1])
        d["sam_mask_decoder"] = worst
    return d


@pytest.mark.parametrize("bundle_dir", bundles())
def test_every_graph_matches_pytorch(bundle_dir):
    d = graph_diffs(bundle_dir)
    report(f"{bundle_dir.name} max abs diff per graph: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
    for k, v in d.items():
        assert v <= TOL, f"{k}: max abs diff {v:.3e} > {TOL}"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def check_goldens(bundle_dir, min_tokens=32):
    """ORT's KV-cache loop reproduces goldens.json (tokens, text, [SEG] positions, masks)."""
    layout, seed = layout_seed_of(bundle_dir)
    _, tok, _, _, _ = tiny_model(layout, seed)
    ob = OrtBundle(bundle_dir)
    g = json.loads((bundle_dir / "goldens.json").read_text())
    assert g["format"] == "lisa-goldens/1"
    worst_iou, total_masks = 1.0, 0
    for case in g["cases"]:
        r = ob.run_case(
            tok,
            bundle_dir / case["image"],
            case["prompt"],
            [tuple(h) for h in case["history"]],
            case["assistant_prefix"],
            case["max_new_tokens"],
        )
        assert r["input_ids"] == case["input_ids"], case["name"]
        assert r["output_ids"] == case["output_ids"], case["name"]
        assert len(case["output_ids"]) >= min_tokens or case["output_ids"][-1] == 2, case["name"]
        assert r["text"] == case["text"], case["name"]
        assert r["seg_positions"] == case["seg_positions"], case["name"]
        assert len(r["masks"]) == len(case["masks"])
        for got, want in zip(r["masks_array"], case["masks"]):
            ref = mask_util.decode({"size": want["rle"]["size"], "counts": want["rle"]["counts"].encode()}) > 0
            iou = mask_iou(got, ref)
            worst_iou = min(worst_iou, iou)
            total_masks += 1
            assert iou >= 0.999, f"{case['name']}: IoU {iou}"
        if r["seg_embeddings"] is not None:
            assert np.max(np.abs(r["seg_embeddings"] - np.array(case["seg_embeddings"]))) <= TOL
    return worst_iou, total_masks, len(g["cases"])


@pytest.mark.parametrize("bundle_dir", bundles())
def test_onnxruntime_reproduces_goldens(bundle_dir):
    worst, n, cases = check_goldens(bundle_dir)
    report(f"{bundle_dir.name}: {cases} golden cases, tokens identical, {n} masks, worst IoU {worst:.6f}")


@pytest.mark.parametrize("bundle_dir", bundles())
def test_kv_cache_reference_equals_full_recompute(bundle_dir):
    """chat.py decodes without a cache; the cached loop must give the same tokens and [SEG] rows."""
    layout, seed = layout_seed_of(bundle_dir)
    lisa, tok, tokens, _, _ = tiny_model(layout, seed)
    g = json.loads((bundle_dir / "goldens.json").read_text())
    case = next(c for c in g["cases"] if c["seg_positions"])
    pv = clip_preprocess(load_image(bundle_dir / case["image"]))
    a = generate(lisa, case["input_ids"], pv, tokens["seg"], case["max_new_tokens"], use_cache=False)
    b = generate(lisa, case["input_ids"], pv, tokens["seg"], case["max_new_tokens"], use_cache=True)
    assert a.output_ids == b.output_ids == case["output_ids"]
    assert a.seg_positions == b.seg_positions == case["seg_positions"]
    assert float((a.seg_hidden - b.seg_hidden).abs().max()) <= TOL


@pytest.mark.parametrize("layout", ["7b", "13b"])
def test_fresh_seed_exports_and_matches(fresh_bundles, layout):
    bundle_dir = fresh_bundles[layout]
    d = graph_diffs(bundle_dir)
    report(f"seed 7 {layout} max abs diff per graph: " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
    assert max(d.values()) <= TOL, d
    check_goldens(bundle_dir)
