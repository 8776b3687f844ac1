"""The PyTorch reference: what LISA's chat.py / model.evaluate do, on the rebuilt model.

Pre-processing is written with Pillow + numpy exactly as the reference's libraries do it (transformers'
CLIPImageProcessor, segment_anything's ResizeLongestSide + Sam.preprocess), so the TypeScript host has one precise
definition to match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .export import CLIP_MEAN, CLIP_STD, SAM_MEAN, SAM_STD, SYSTEM
from .model import Lisa, postprocess_masks

IMAGE_TEXT = "<im_start><image><im_end>\n"
IMAGE_TOKEN_INDEX = -200
NUM_IMAGE_TOKENS = 256


# ---------------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------------

def load_image(path: str | Path) -> Image.Image:
    """Decode once: EXIF orientation applied (cv2.imread does this by default), RGB."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")


def clip_preprocess(img: Image.Image) -> np.ndarray:
    """CLIPImageProcessor(openai/clip-vit-large-patch14): shortest edge 224 (long edge int-truncated), PIL BICUBIC,
    center crop 224 with offsets (h-224)//2, (w-224)//2, rescale 1/255 (float64 -> float32), normalize in float32."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 224, int(224 * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    r = np.asarray(img.resize((nw, nh), resample=Image.BICUBIC))
    top, left = (nh - 224) // 2, (nw - 224) // 2
    r = r[top:top + 224, left:left + 224]
    x = (r.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def sam_resize_size(h: int, w: int, long_side: int = 1024) -> tuple[int, int]:
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_preprocess(img: Image.Image) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """ResizeLongestSide(1024) (PIL BILINEAR through torchvision's resize), then Sam.preprocess: (x - mean) / std in
    float32 and zero padding bottom-right to 1024x1024.  Returns (pixel_values, resize_size, orig_size)."""
    w, h = img.size
    newh, neww = sam_resize_size(h, w)
    r = np.asarray(img.resize((neww, newh), resample=Image.BILINEAR)).astype(np.float32)
    x = (r - np.array(SAM_MEAN, np.float32)) / np.array(SAM_STD, np.float32)
    out = np.zeros((1, 3, 1024, 1024), np.float32)
    out[0, :, :newh, :neww] = x.transpose(2, 0, 1)
    return out, (newh, neww), (h, w)


def tensor_summary(x: np.ndarray) -> dict:
    flat = x.reshape(-1)
    return {"shape": list(x.shape), "sum": float(flat.astype(np.float64).sum()),
            "abs_sum": float(np.abs(flat.astype(np.float64)).sum()), "first": [float(v) for v in flat[:16]]}


# ---------------------------------------------------------------------------------------------------------------------
# Prompt
# ---------------------------------------------------------------------------------------------------------------------

def build_prompt(prompt: str, history: list[tuple[str, str]] | None = None, assistant_prefix: str = "") -> str:
    """llava_v1 (docs/bundle-format.md, "The prompt")."""
    turns = list(history or []) + [(prompt, None)]
    out = SYSTEM + " "
    for i, (u, a) in enumerate(turns):
        user = (IMAGE_TEXT + u) if i == 0 else u
        out += f"USER: {user} ASSISTANT:"
        if a is not None:
            out += f" {a}</s>"
    if assistant_prefix:
        out += " " + assistant_prefix
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class Generation:
    input_ids: list[int]
    output_ids: list[int]
    seg_positions: list[int]
    seg_hidden: torch.Tensor  # [N,H]
    step_logits: list[torch.Tensor] = field(default_factory=list)  # last-position logits per step


def _embed_sequence(lisa: Lisa, ids: list[int], image_features: torch.Tensor) -> torch.Tensor:
    k = ids.index(IMAGE_TOKEN_INDEX)
    emb = lisa.llm.model.embed_tokens
    before = emb(torch.tensor([ids[:k]], dtype=torch.int64))
    after = emb(torch.tensor([ids[k + 1:]], dtype=torch.int64))
    return torch.cat([before, image_features, after], dim=1)


def _mask_for(ids: list[int]) -> list[int]:
    """1 per expanded position, 0 where the original id is 0 (generate: input_ids != pad_id)."""
    out = []
    for t in ids:
        if t == IMAGE_TOKEN_INDEX:
            out += [1] * NUM_IMAGE_TOKENS
        else:
            out.append(0 if t == 0 else 1)
    return out


def seg_positions_of(full_ids: list[int], seg_id: int) -> list[int]:
    """Index j into input_ids+output_ids (-200 counted once) such that full_ids[j+1] == [SEG]."""
    return [j for j in range(len(full_ids) - 1) if full_ids[j + 1] == seg_id]


def expanded_index(j: int, full_ids: list[int]) -> int:
    """Position of full_ids[j] in the embedded sequence (the image placeholder becomes 256 rows)."""
    k = full_ids.index(IMAGE_TOKEN_INDEX)
    return j if j < k else j + NUM_IMAGE_TOKENS - 1


@torch.no_grad()
def generate(lisa: Lisa, input_ids: list[int], pixel_values: np.ndarray, seg_id: int, max_new_tokens: int = 40,
             eos_id: int = 2, use_cache: bool = False, keep_logits: bool = False) -> Generation:
    """Greedy decoding as HF generate(num_beams=1) in LISA.evaluate.  use_cache=False recomputes the whole sequence
    every step (LISA sets config.use_cache=False); [SEG] hidden states are the post-norm last hidden states of the
    tokens preceding each [SEG] in prompt+output (LISA's 255-offset rule)."""
    image_features = lisa.clip_features(torch.from_numpy(pixel_values))
    base = _embed_sequence(lisa, input_ids, image_features)
    mask = _mask_for(input_ids)
    out_ids: list[int] = []
    step_logits = []
    lm = lisa.llm.model
    hidden_rows: dict[int, torch.Tensor] = {}  # expanded position -> hidden (cached mode)
    past = None
    last_full_hidden = None
    for step in range(max_new_tokens):
        if use_cache:
            if past is None:
                emb = base
                pos = torch.arange(0, base.shape[1])[None]
            else:
                emb = lm.embed_tokens(torch.tensor([[out_ids[-1]]], dtype=torch.int64))
                pos = torch.tensor([[base.shape[1] + len(out_ids) - 1]])
            from transformers import DynamicCache

            if past is None:
                past = DynamicCache()
            am = torch.tensor([mask + [1] * len(out_ids)], dtype=torch.int64)
            o = lm(inputs_embeds=emb, attention_mask=am, position_ids=pos, past_key_values=past, use_cache=True)
            h = o.last_hidden_state
            start = int(pos[0, 0])
            for r in range(h.shape[1]):
                hidden_rows[start + r] = h[0, r].clone()
        else:
            if out_ids:
                emb = torch.cat([base, lm.embed_tokens(torch.tensor([out_ids], dtype=torch.int64))], dim=1)
            else:
                emb = base
            am = torch.tensor([mask + [1] * len(out_ids)], dtype=torch.int64)
            pos = torch.arange(0, emb.shape[1])[None]
            o = lm(inputs_embeds=emb, attention_mask=am, position_ids=pos, use_cache=False)
            h = o.last_hidden_state
            last_full_hidden = h[0]
        logits = lisa.llm.lm_head(h[:, -1])[0]
        if keep_logits:
            step_logits.append(logits.clone())
        nxt = int(torch.argmax(logits))
        out_ids.append(nxt)
        if nxt == eos_id:
            break
    full = input_ids + out_ids
    seg_pos = seg_positions_of(full, seg_id)
    rows = []
    for j in seg_pos:
        e = expanded_index(j, full)
        if use_cache:
            rows.append(hidden_rows[e])
        else:
            rows.append(last_full_hidden[e])
    H = lisa.hidden_size
    seg_hidden = torch.stack(rows) if rows else torch.zeros(0, H)
    return Generation(input_ids, out_ids, seg_pos, seg_hidden, step_logits)


@torch.no_grad()
def masks_for(lisa: Lisa, sam_pixel_values: np.ndarray, seg_embeddings: torch.Tensor, resize_size, orig_size):
    img_emb = lisa.image_encoder(torch.from_numpy(sam_pixel_values))
    if seg_embeddings.shape[0] == 0:
        return np.zeros((0, orig_size[0], orig_size[1]), bool), img_emb, None
    masks, iou, low = lisa.sam_masks(img_emb, seg_embeddings, resize_size, orig_size)
    return (masks[:, 0] > 0).numpy(), img_emb, masks


def rle_of(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [int(round(v)) for v in mask_util.toBbox(r).tolist()]
    area = int(mask_util.area(r))
    counts = r["counts"].decode("ascii") if isinstance(r["counts"], bytes) else r["counts"]
    return {"rle": {"size": [int(s) for s in r["size"]], "counts": counts}, "bbox": bbox, "area": area}


def clean_text(decoded: str) -> str:
    """chat.py/app.py: drop every newline, collapse double spaces, keep the text after the last 'ASSISTANT: '."""
    t = decoded.replace("\n", "").replace("  ", " ")
    return t.split("ASSISTANT: ")[-1]


@torch.no_grad()
def run_case(lisa: Lisa, tokenizer, tokens: dict, image_path: Path, prompt: str, history=None,
             assistant_prefix: str = "", max_new_tokens: int = 40, use_cache: bool = False) -> dict:
    from .tokenizer import decode, tokenize_prompt

    img = load_image(image_path)
    clip_pv = clip_preprocess(img)
    sam_pv, resize_size, orig_size = sam_preprocess(img)
    text = build_prompt(prompt, history, assistant_prefix)
    ids = list(tokenize_prompt(tokenizer, text))
    gen = generate(lisa, ids, clip_pv, tokens["seg"], max_new_tokens, tokens["eos"], use_cache=use_cache)
    seg_emb = lisa.seg_project(gen.seg_hidden)
    masks, _, _ = masks_for(lisa, sam_pv, seg_emb, resize_size, orig_size)
    full = [t for t in gen.input_ids + gen.output_ids if t != IMAGE_TOKEN_INDEX]
    decoded = decode(tokenizer, full)
    return {
        "prompt": prompt, "history": [list(t) for t in (history or [])], "assistant_prefix": assistant_prefix,
        "max_new_tokens": max_new_tokens, "prompt_text": text, "input_ids": ids, "output_ids": gen.output_ids,
        "text": clean_text(decoded), "seg_positions": gen.seg_positions,
        "seg_embeddings": [[float(v) for v in row] for row in seg_emb.numpy().astype(np.float32)],
        "masks": [{"seg_index": i, **rle_of(m)} for i, m in enumerate(masks)],
        "clip_pixel_values": tensor_summary(clip_pv), "sam_pixel_values": tensor_summary(sam_pv),
        "resize_size": list(resize_size), "orig_size": list(orig_size),
    }
