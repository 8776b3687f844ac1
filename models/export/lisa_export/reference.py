"""The PyTorch reference: what LISA's chat.py / model.evaluate do, on the rebuilt model.

Decoding is chat.py's own (cv2.imread, then BGR -> RGB). Pre-processing is written with Pillow + numpy exactly as the
reference's libraries do it (transformers' CLIPImageProcessor, segment_anything's ResizeLongestSide + Sam.preprocess)
with the resize of the Pillow that LISA pins (9.4.0), so the TypeScript host has one precise definition to match.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .export import CLIP_MEAN, CLIP_STD, SAM_MEAN, SAM_STD, SYSTEM
from .model import Lisa

IMAGE_TOKEN_INDEX = -200
NUM_IMAGE_TOKENS = 256


# ---------------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------------


def load_image(path: str | Path) -> Image.Image:
    """chat.py's decode: cv2.imread(path) with OpenCV's default IMREAD_COLOR (EXIF orientation applied, 16 bits to 8,
    grey replicated, alpha dropped, palette expanded, ICC profile ignored, CMYK by OpenCV's own formula), then
    BGR -> RGB."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: OpenCV cannot read this image (cv2.imread returned None)")
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def pillow_resize(img: Image.Image, size: tuple[int, int], resample) -> Image.Image:
    """Image.resize as LISA's Pillow 9.4.0 computes it: the horizontal pass, then the vertical pass (each through
    uint8). Later Pillows run the vertical pass first for some sizes (tall images, large downscales), which moves values
    by one level; one pass at a time gives 9.4.0's result on any Pillow."""
    w, h = img.size
    if size[0] != w and size[1] != h:
        img = img.resize((size[0], h), resample=resample)
    return img.resize(size, resample=resample)


def clip_preprocess(img: Image.Image) -> np.ndarray:
    """CLIPImageProcessor(openai/clip-vit-large-patch14): shortest edge 224 (long edge int-truncated), PIL BICUBIC,
    center crop 224 with offsets (h-224)//2, (w-224)//2, rescale 1/255 (float64 -> float32), normalize in float32."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = 224, int(224 * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    r = np.asarray(pillow_resize(img, (nw, nh), Image.BICUBIC))
    top, left = (nh - 224) // 2, (nw - 224) // 2
    r = r[top : top + 224, left : left + 224]
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
    r = np.asarray(pillow_resize(img, (neww, newh), Image.BILINEAR)).astype(np.float32)
    x = (r - np.array(SAM_MEAN, np.float32)) / np.array(SAM_STD, np.float32)
    out = np.zeros((1, 3, 1024, 1024), np.float32)
    out[0, :, :newh, :neww] = x.transpose(2, 0, 1)
    return out, (newh, neww), (h, w)


def tensor_summary(x: np.ndarray) -> dict:
    flat = x.reshape(-1)
    return {
        "shape": list(x.shape),
        "sum": float(flat.astype(np.float64).sum()),
        "abs_sum": float(np.abs(flat.astype(np.float64)).sum()),
        "first": [float(v) for v in flat[:16]],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Prompt
# ---------------------------------------------------------------------------------------------------------------------


def build_prompt(prompt: str, history: list[tuple[str, str]] | None = None, assistant_prefix: str = "") -> str:
    """llava_v1 as LISA renders it (docs/bundle-format.md, "The prompt"): an empty message is its bare role and colon
    (``ASSISTANT:USER:``), as in LISA's conversation.py."""
    from .tokenizer import build_prompt as llava_v1

    return llava_v1(SYSTEM, list(history or []), prompt, assistant_prefix)


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
    after = emb(torch.tensor([ids[k + 1 :]], dtype=torch.int64))
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
def generate(
    lisa: Lisa,
    input_ids: list[int],
    pixel_values: np.ndarray,
    seg_id: int,
    max_new_tokens: int = 40,
    eos_id: int = 2,
    use_cache: bool = False,
    keep_logits: bool = False,
) -> Generation:
    """Greedy decoding as HF generate(num_beams=1) in LISA.evaluate.  use_cache=False recomputes the whole sequence
    every step (LISA sets config.use_cache=False); [SEG] hidden states are the post-norm last hidden states of the
    tokens preceding each [SEG] in prompt+output (LISA's 255-offset rule)."""
    image_features = lisa.clip_features(torch.from_numpy(pixel_values).to(lisa.llm.dtype))
    base = _embed_sequence(lisa, input_ids, image_features)
    mask = _mask_for(input_ids)
    out_ids: list[int] = []
    step_logits = []
    lm = lisa.llm.model
    hidden_rows: dict[int, torch.Tensor] = {}  # expanded position -> hidden (cached mode)
    past = None
    last_full_hidden = None
    for _ in range(max_new_tokens):
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
    seg_hidden = torch.stack(rows) if rows else torch.zeros(0, H, dtype=lisa.llm.dtype)
    return Generation(input_ids, out_ids, seg_pos, seg_hidden, step_logits)


@torch.no_grad()
def masks_for(lisa: Lisa, sam_pixel_values: np.ndarray, seg_embeddings: torch.Tensor, resize_size, orig_size):
    """(binary masks [N,H,W], SAM image embedding, IoU predictions [N])."""
    img_emb = lisa.image_encoder(torch.from_numpy(sam_pixel_values).to(lisa.llm.dtype))
    if seg_embeddings.shape[0] == 0:
        return np.zeros((0, orig_size[0], orig_size[1]), bool), img_emb, np.zeros(0, np.float32)
    masks, iou, low = lisa.sam_masks(img_emb, seg_embeddings, resize_size, orig_size)
    return (masks[:, 0] > 0).numpy(), img_emb, iou[:, 0].float().numpy()


def rle_of(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [int(round(v)) for v in mask_util.toBbox(r).tolist()]
    area = int(mask_util.area(r))
    counts = r["counts"].decode("ascii") if isinstance(r["counts"], bytes) else r["counts"]
    return {"rle": {"size": [int(s) for s in r["size"]], "counts": counts}, "bbox": bbox, "area": area}


def clean_text(decoded: str) -> str:
    """chat.py/app.py: drop every newline, collapse double spaces, keep the text after the last 'ASSISTANT: '; unlike
    app.py, an answer glued to 'ASSISTANT:' (no space) is cut there too rather than returning the whole prompt
    (src/host/prompt.ts cleanAnswer)."""
    t = decoded.replace("\n", "").replace("  ", " ")
    at = t.rfind("ASSISTANT:")
    if at < 0:
        return t
    rest = t[at + len("ASSISTANT:") :]
    return rest[1:] if rest.startswith(" ") else rest


@dataclass
class Run:
    """One request through the reference, every intermediate kept."""

    prompt_text: str
    input_ids: list[int]
    gen: Generation
    seg_emb: torch.Tensor
    masks: np.ndarray
    scores: np.ndarray
    decoded: str
    clip_pv: np.ndarray
    sam_pv: np.ndarray
    resize_size: tuple[int, int]
    orig_size: tuple[int, int]
    timings: dict[str, float]


@torch.no_grad()
def run(
    lisa: Lisa,
    tokenizer,
    tokens: dict,
    image_path: Path,
    prompt: str,
    history=None,
    assistant_prefix: str = "",
    max_new_tokens: int = 40,
    use_cache: bool = False,
) -> Run:
    """Masks come from this turn's [SEG]s only (those of the assistant prefix included): a [SEG] re-fed in the history
    gets none, as in the host."""
    from .tokenizer import decode, tokenize_prompt

    t = {"start": time.perf_counter()}
    img = load_image(image_path)
    t["decoded"] = time.perf_counter()
    clip_pv = clip_preprocess(img)
    sam_pv, resize_size, orig_size = sam_preprocess(img)
    t["preprocessed"] = time.perf_counter()
    text = build_prompt(prompt, history, assistant_prefix)
    ids = list(tokenize_prompt(tokenizer, text))
    answer_start = len(tokenize_prompt(tokenizer, build_prompt(prompt, history))) if assistant_prefix else len(ids)
    gen = generate(lisa, ids, clip_pv, tokens["seg"], max_new_tokens, tokens["eos"], use_cache=use_cache)
    keep = [i for i, j in enumerate(gen.seg_positions) if j + 1 >= answer_start]
    gen.seg_positions = [gen.seg_positions[i] for i in keep]
    gen.seg_hidden = gen.seg_hidden[keep]
    t["generated"] = time.perf_counter()
    seg_emb = lisa.seg_project(gen.seg_hidden)
    masks, _, scores = masks_for(lisa, sam_pv, seg_emb, resize_size, orig_size)
    t["masks"] = time.perf_counter()
    decoded = decode(tokenizer, [i for i in gen.input_ids + gen.output_ids if i != IMAGE_TOKEN_INDEX])
    ms = {
        k: 1000 * (t[b] - t[a])
        for k, a, b in (
            ("decodeImageMs", "start", "decoded"),
            ("preprocessMs", "decoded", "preprocessed"),
            ("decodeMs", "preprocessed", "generated"),
            ("maskDecoderMs", "generated", "masks"),
            ("totalMs", "start", "masks"),
        )
    }
    return Run(text, ids, gen, seg_emb, masks, scores, decoded, clip_pv, sam_pv, resize_size, orig_size, ms)


def run_case(
    lisa: Lisa,
    tokenizer,
    tokens: dict,
    image_path: Path,
    prompt: str,
    history=None,
    assistant_prefix: str = "",
    max_new_tokens: int = 40,
    use_cache: bool = False,
) -> dict:
    """A golden case (goldens.json)."""
    r = run(lisa, tokenizer, tokens, image_path, prompt, history, assistant_prefix, max_new_tokens, use_cache)
    return {
        "prompt": prompt,
        "history": [list(t) for t in (history or [])],
        "assistant_prefix": assistant_prefix,
        "max_new_tokens": max_new_tokens,
        "prompt_text": r.prompt_text,
        "input_ids": r.input_ids,
        "output_ids": r.gen.output_ids,
        "text": clean_text(r.decoded),
        "seg_positions": r.gen.seg_positions,
        "seg_embeddings": [[float(v) for v in row] for row in r.seg_emb.numpy().astype(np.float32)],
        "masks": [{"seg_index": i, **rle_of(m)} for i, m in enumerate(r.masks)],
        "clip_pixel_values": tensor_summary(r.clip_pv),
        "sam_pixel_values": tensor_summary(r.sam_pv),
        "resize_size": list(r.resize_size),
        "orig_size": list(r.orig_size),
    }


def segment_result(
    lisa: Lisa,
    tokenizer,
    tokens: dict,
    image_path: Path,
    prompt: str,
    history=None,
    assistant_prefix: str = "",
    max_new_tokens: int = 512,
    model: dict | None = None,
) -> dict:
    """The result JSON of ``reason-segment segment --json`` (src/protocol/wire-types.ts SegmentResult), from the
    PyTorch reference: provider "pytorch-cpu"; timings are the reference's own stages (CLIP runs inside decodeMs, the
    SAM encoder inside maskDecoderMs; no ONNX Runtime, so onnxMs is 0)."""
    import hashlib

    r = run(lisa, tokenizer, tokens, image_path, prompt, history, assistant_prefix, max_new_tokens)
    out = r.gen.output_ids
    answer = r.decoded[r.decoded.rfind("ASSISTANT:") + len("ASSISTANT:") :]
    answer = re.sub(r"</s>\s*$", "", answer).strip()
    n_in = len(r.input_ids)
    zero = ("clipMs", "samEncoderMs", "prefillMs")
    return {
        "format": "reason-segment-result/1",
        "model": model or {"variant": "pytorch-reference", "bundle": ""},
        "provider": "pytorch-cpu",
        "prompt": prompt,
        "history": [{"user": u, "assistant": a} for u, a in (history or [])],
        "text": clean_text(r.decoded),
        "answer": answer,
        "outputIds": out,
        "image": {
            "width": r.orig_size[1],
            "height": r.orig_size[0],
            "sha256": hashlib.sha256(Path(image_path).read_bytes()).hexdigest(),
            "source": str(image_path),
        },
        "masks": [
            {"segIndex": i, "tokenIndex": j + 1 - n_in if j + 1 >= n_in else -1, **rle_of(m), "score": float(score)}
            for i, (j, m, score) in enumerate(zip(r.gen.seg_positions, r.masks, r.scores))
        ],
        "timings": {**{k: 0.0 for k in zero}, **r.timings, "onnxMs": 0.0, "newTokens": len(out), "cacheHit": False},
        "stopReason": "eos" if out and out[-1] == tokens["eos"] else "max_new_tokens",
    }
