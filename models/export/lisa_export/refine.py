"""Refining a mask by clicking: the PyTorch reference for the `sam_prompt_decoder` graph, its golden cases, and a
SAM-ViT-H-sized prompt decoder with random weights for the refine benchmark.

The reference is SAM's own PromptEncoder (segment_anything.modeling.PromptEncoder.forward with points and boxes) with
LISA's sparse text embedding appended after the point and box embeddings, as LISA's fork of the prompt encoder does
(`sparse_embeddings = torch.cat([sparse_embeddings, text_embeds], dim=1)`), then the mask decoder (mask index 0) and
LISA's postprocess_masks.  Points and the box come in pixels of the original image and are mapped into the resized
image as segment_anything's ResizeLongestSide.apply_coords / apply_boxes do (numpy float64).

`python -m lisa_export.refine --vit-h-decoder OUT.onnx` writes the benchmark's decoder graph.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .model import SAM_GRID, SAM_IMG_SIZE, Lisa, postprocess_masks

# SAM's prompt-side dims are the same for ViT-B/L/H (build_sam.py): prompt_embed_dim 256, TwoWayTransformer depth 2,
# mlp_dim 2048, 8 heads, IoU head 3 layers of 256, mask_in_chans 16.
VIT_H_DECODER = {"dim": 256, "depth": 2, "mlp_dim": 2048, "heads": 8, "iou_hidden": 256, "mask_in_chans": 16}


def apply_coords(coords: np.ndarray, orig_size, resize_size) -> np.ndarray:
    """ResizeLongestSide.apply_coords: [..., 2] (x, y) pixels of the original image -> of the resized image."""
    (h, w), (newh, neww) = orig_size, resize_size
    c = np.array(coords, dtype=float, copy=True)
    c[..., 0] = c[..., 0] * (neww / w)
    c[..., 1] = c[..., 1] * (newh / h)
    return c


@torch.no_grad()
def refine_reference(
    prompt_encoder,
    mask_decoder,
    image_embeddings: torch.Tensor,
    seg_embedding: torch.Tensor,
    points: list[list[float]],
    labels: list[int],
    box: list[float] | None,
    resize_size,
    orig_size,
):
    """One mask: (logits [1,1,h,w], iou [1,1]).  ``seg_embedding`` [1,C]; points [[x,y],...] with labels 1/0; box
    [x0,y0,x1,y1] or None; all in original-image pixels.  No points and no box: LISA's own call (text_embeds only)."""
    pts = None
    if points:
        c = apply_coords(np.array(points, float)[None], orig_size, resize_size)
        pts = (torch.as_tensor(c, dtype=torch.float), torch.as_tensor([labels], dtype=torch.int))
    bx = None
    if box is not None:
        b = apply_coords(np.array(box, float).reshape(-1, 2, 2), orig_size, resize_size).reshape(-1, 4)
        bx = torch.as_tensor(b, dtype=torch.float)
    if pts is None and bx is None:
        sparse = torch.empty((1, 0, seg_embedding.shape[-1]))
    else:
        sparse, _ = prompt_encoder(points=pts, boxes=bx, masks=None)
    sparse = torch.cat([sparse, seg_embedding[:, None, :]], dim=1)  # LISA: text_embeds appended last
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, SAM_GRID, SAM_GRID)
    low_res, iou = mask_decoder(
        image_embeddings=image_embeddings,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return postprocess_masks(low_res, resize_size, orig_size), iou


def graph_prompt(points, labels, box) -> tuple[np.ndarray, np.ndarray]:
    """What the sam_prompt_decoder graph takes for one mask, in the prompt encoder's order: the points, SAM's padding
    point (label -1) when there is no box, then the box's corners (labels 2, 3).  Returns (coords [1,P,2] float32,
    labels [1,P] float32).  The host builds the same sequence (src/host/refine.ts)."""
    c = [list(map(float, p)) for p in points]
    lab = [float(v) for v in labels]
    if points and box is None:
        c.append([0.0, 0.0])
        lab.append(-1.0)
    if box is not None:
        c += [[float(box[0]), float(box[1])], [float(box[2]), float(box[3])]]
        lab += [2.0, 3.0]
    coords = np.array(c, np.float32).reshape(1, -1, 2)
    return coords, np.array(lab, np.float32).reshape(1, -1)


def golden_prompts(h: int, w: int) -> list[dict]:
    """The refine goldens' prompts for an image of h x w: a point, a negative point, a box, point+box."""

    def px(fx, fy):
        return [round(fx * (w - 1), 1), round(fy * (h - 1), 1)]

    box = px(0.15, 0.2) + px(0.7, 0.85)
    return [
        {"name": "point", "points": [px(0.4, 0.45)], "labels": [1], "box": None},
        {"name": "negative-point", "points": [px(0.3, 0.3), px(0.6, 0.55)], "labels": [1, 0], "box": None},
        {"name": "box", "points": [], "labels": [], "box": box},
        {"name": "point-box", "points": [px(0.5, 0.5), px(0.2, 0.3)], "labels": [1, 0], "box": box},
    ]


def refine_goldens(lisa: Lisa, cases: list[dict], bundle: Path) -> list[dict]:
    """Refine goldens for every golden case with masks: its first mask refined by each of golden_prompts.  Each entry
    names its case and mask (the host re-runs the case, then refines its result), the prompts, and the expected mask
    (RLE) and IoU prediction."""
    from .reference import load_image, rle_of, sam_preprocess

    out = []
    done_images = set()
    for case in cases:
        if not case["masks"] or case["image"] in done_images:
            continue
        done_images.add(case["image"])  # one case per image keeps the fixture small
        sam_pv, resize_size, orig_size = sam_preprocess(load_image(bundle / case["image"]))
        with torch.no_grad():
            img_emb = lisa.image_encoder(torch.from_numpy(sam_pv))
        seg = torch.tensor(case["seg_embeddings"][:1], dtype=torch.float32)
        for p in golden_prompts(*orig_size):
            logits, iou = refine_reference(
                lisa.prompt_encoder,
                lisa.mask_decoder,
                img_emb,
                seg,
                p["points"],
                p["labels"],
                p["box"],
                resize_size,
                orig_size,
            )
            out.append(
                {
                    "name": f"{case['name']}/{p['name']}",
                    "case": case["name"],
                    "mask_index": 0,
                    "points": p["points"],
                    "labels": p["labels"],
                    "box": p["box"],
                    "iou": float(iou[0, 0]),
                    "mask": rle_of((logits[0, 0] > 0).numpy()),
                }
            )
    return out


def vit_h_prompt_decoder(seed: int = 0):
    """SAM's PromptEncoder + MaskDecoder at ViT-H's (every SAM's) prompt-side dims, random weights."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    d = VIT_H_DECODER
    torch.manual_seed(seed)
    pe = PromptEncoder(
        embed_dim=d["dim"],
        image_embedding_size=(SAM_GRID, SAM_GRID),
        input_image_size=(SAM_IMG_SIZE, SAM_IMG_SIZE),
        mask_in_chans=d["mask_in_chans"],
    )
    md = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=d["depth"], embedding_dim=d["dim"], mlp_dim=d["mlp_dim"], num_heads=d["heads"]
        ),
        transformer_dim=d["dim"],
        iou_head_depth=3,
        iou_head_hidden_dim=d["iou_hidden"],
    )
    return pe.eval(), md.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lisa_export.refine", description=__doc__.split("\n")[0])
    ap.add_argument("--vit-h-decoder", type=Path, required=True, metavar="OUT.onnx")
    a = ap.parse_args(argv)
    from .export import export_prompt_decoder

    pe, md = vit_h_prompt_decoder()
    a.vit_h_decoder.parent.mkdir(parents=True, exist_ok=True)
    export_prompt_decoder(pe, md, a.vit_h_decoder)
    print(f"wrote {a.vit_h_decoder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
