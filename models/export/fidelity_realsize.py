"""Fidelity at LISA's real width (not in CI: minutes, and GBs of memory).

models/export/venv run models/export/fidelity_realsize.py truncated --root DIR
    A 7B-shaped random checkpoint cut to 2 decoder layers (full-width LLaMA layers, embedding and lm_head, full
    SAM ViT-H, CLIP ViT-L/14) is written by lisa_export.realsize, exported in fp32 through the streaming path, and
    compared with the PyTorch reference on one request: greedy tokens, masks (IoU), and each graph's max abs
    difference on that request's own inputs.
models/export/venv run models/export/fidelity_realsize.py layers --checkpoint DIR/lisa --bundle BUNDLE
    The full-depth quantised bundle's decoder (w8a8 or int4) against the checkpoint's fp32 layers run one at a
    time in PyTorch (one layer in memory): relative error of the last hidden state on the same input.  --perturb
    also runs the layers with w8a8- and int4-rounded weights in PyTorch and prints how the error grows with depth.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "test" / "fixtures" / "bundles" / "tiny-7b" / "images" / "coffee.png"
PROMPT = "Which object in this picture would keep a drink warm the longest? Please output segmentation mask."
PREFIX = "Sure, [SEG]."  # random weights never pick [SEG]: force one so a mask is made


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def truncated(a) -> int:
    from lisa_export.export import token_spec
    from lisa_export.graphs import Decoder, EmbedTokens, SamImageEncoder, SamMaskDecoder, SegProjector
    from lisa_export.model import load_lisa
    from lisa_export.ort_run import OrtBundle
    from lisa_export.realsize import main as realsize
    from lisa_export.reference import _embed_sequence, _mask_for, run
    from lisa_export.tokenizer import load_slow_tokenizer

    root = Path(a.root).absolute()
    bundle = root / "bundle-fp32"
    if not (bundle / "lisa.manifest.json").exists():
        rc = realsize(
            ["--shape", "7b", "--seed", str(a.seed), "--layers", "2", "--weights", "float32", "--out", str(bundle),
             "--checkpoint", str(root / "checkpoint")]
        )  # fmt: skip
        if rc:
            return rc
    ckpt, clip = root / "checkpoint" / "lisa", root / "checkpoint" / "clip"
    tok = load_slow_tokenizer(ckpt)
    tokens = token_spec(tok, "7b")
    torch.set_num_threads(2)
    lisa, _ = load_lisa(ckpt, clip, layout="7b", tokenizer_len=len(tok))
    t0 = time.time()
    ref = run(lisa, tok, tokens, IMAGE, PROMPT, [], PREFIX, a.new_tokens, use_cache=True)
    print(
        f"reference: {len(ref.gen.output_ids)} tokens, {len(ref.masks)} mask(s) in {time.time() - t0:.0f} s", flush=True
    )
    # every graph's torch output on this request's own inputs
    with torch.no_grad():
        clip_pv = torch.from_numpy(ref.clip_pv)
        feats = lisa.clip_features(clip_pv)
        ids = [t if t >= 0 else 0 for t in ref.input_ids]
        emb = _embed_sequence(lisa, ref.input_ids, feats)
        am = torch.tensor([_mask_for(ref.input_ids)], dtype=torch.int64)
        pos = torch.arange(emb.shape[1])[None]
        cfg = lisa.llm.config
        D = cfg.hidden_size // cfg.num_attention_heads
        past = [torch.zeros(1, cfg.num_key_value_heads, 0, D) for _ in range(2 * cfg.num_hidden_layers)]
        dec = Decoder(lisa)(emb, am, pos, *past)
        sam_emb = SamImageEncoder(lisa)(torch.from_numpy(ref.sam_pv))
        seg = SegProjector(lisa)(ref.gen.seg_hidden)
        rs, os_ = torch.tensor(ref.resize_size), torch.tensor(ref.orig_size)
        md = SamMaskDecoder(lisa)(sam_emb, seg, rs, os_)
        want = {
            "vision_encoder": ({"pixel_values": ref.clip_pv}, [feats]),
            "embed_tokens": ({"input_ids": np.array([ids], np.int64)}, [EmbedTokens(lisa)(torch.tensor([ids]))]),
            "decoder": (
                {
                    "inputs_embeds": emb.numpy(),
                    "attention_mask": am.numpy(),
                    "position_ids": pos.numpy(),
                    **{
                        f"past_key_values.{i}.{kv}": np.zeros((1, cfg.num_key_value_heads, 0, D), np.float32)
                        for i in range(cfg.num_hidden_layers)
                        for kv in ("key", "value")
                    },
                },
                list(dec),
            ),
            "seg_projector": ({"seg_hidden": ref.gen.seg_hidden.numpy()}, [seg]),
            "sam_image_encoder": ({"pixel_values": ref.sam_pv}, [sam_emb]),
            "sam_mask_decoder": (
                {
                    "image_embeddings": sam_emb.numpy(),
                    "seg_embeddings": seg.numpy(),
                    "resize_size": rs.numpy(),
                    "orig_size": os_.numpy(),
                },
                list(md),
            ),
        }
        want = {g: (feeds, [o.numpy() for o in outs]) for g, (feeds, outs) in want.items()}
    del lisa, dec, md, sam_emb, feats, emb
    gc.collect()
    manifest = json.loads((bundle / "lisa.manifest.json").read_text())
    diffs = {}
    for g, (feeds, outs) in want.items():
        s = session(bundle / manifest["graphs"][g]["file"])
        got = s.run(None, feeds)
        diffs[g] = max(float(np.abs(x - y).max()) for x, y in zip(got, outs))
        print(f"  {g}: max abs diff {diffs[g]:.2e}", flush=True)
        del s, got
        gc.collect()
    ob = OrtBundle(bundle)
    img_case = ob.run_case(tok, IMAGE, PROMPT, [], PREFIX, a.new_tokens)
    same = img_case["output_ids"] == ref.gen.output_ids
    got_masks = list(img_case["masks_array"])
    ious = [mask_iou(x, y) for x, y in zip(got_masks, ref.masks)]
    print(
        f"7B width, 2 layers, SAM ViT-H, fp32 streamed: tokens {'identical' if same else 'DIFFERENT'} "
        f"({len(ref.gen.output_ids)}), masks {len(got_masks)}/{len(ref.masks)}, IoU min "
        f"{min(ious) if ious else float('nan'):.5f}; max abs diff per graph "
        + ", ".join(f"{g} {d:.1e}" for g, d in diffs.items())
        + f"; peak RSS {peak_gb():.2f} GB"
    )
    return 0 if same and ious and min(ious) >= 0.999 else 1


def rel_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm())


def int4_like(w: torch.Tensor) -> torch.Tensor:
    """Symmetric 4-bit round-to-nearest in blocks of 32 along the input, as MatMulNBits quantises (up to the
    quantiser's choice of scale); vectors (norms) are left as they are."""
    if w.ndim != 2:
        return w
    b = w.reshape(w.shape[0], -1, 32)
    scale = b.abs().amax(-1, keepdim=True) / 7
    return (torch.round(b / scale).clamp(-8, 7) * scale).reshape(w.shape)


def int8_like(w: torch.Tensor) -> torch.Tensor:
    """w8a8's weights: symmetric per output channel, |q| <= W8A8_WEIGHT_MAX (its activations are not simulated)."""
    from lisa_export.export import W8A8_WEIGHT_MAX

    if w.ndim != 2:
        return w
    scale = w.abs().amax(1, keepdim=True) / W8A8_WEIGHT_MAX
    return torch.round(w / scale).clamp(-W8A8_WEIGHT_MAX, W8A8_WEIGHT_MAX) * scale


PERTURB = {"w8a8-weights-like": int8_like, "int4-like": int4_like}


def layers(a) -> int:
    """Quantised bundle's decoder vs fp32 layers one at a time; inputs: seeded random embeddings at the width."""
    from lisa_export.model import TensorSource, infer_llm_config
    from lisa_export.stream import template_llm

    ckpt = Path(a.checkpoint)
    src = TensorSource(ckpt)
    cfg = infer_llm_config(src, ckpt)
    S, H, L = a.positions, cfg.hidden_size, cfg.num_hidden_layers
    D = H // cfg.num_attention_heads
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(1, S, H, generator=g) * 0.02
    bundle = Path(a.bundle)
    manifest = json.loads((bundle / "lisa.manifest.json").read_text())
    t0 = time.time()
    s = session(bundle / manifest["graphs"]["decoder"]["file"])
    feeds = {
        "inputs_embeds": emb.numpy(),
        "attention_mask": np.ones((1, S), np.int64),
        "position_ids": np.arange(S, dtype=np.int64)[None],
        **{
            f"past_key_values.{i}.{kv}": np.zeros((1, cfg.num_key_value_heads, 0, D), np.float32)
            for i in range(L)
            for kv in ("key", "value")
        },
    }
    names = [o.name for o in s.get_outputs()]
    got = s.run(["last_hidden_state"], feeds)[0]
    print(
        f"ours ({manifest['llm']['weights']}): {S} positions in {time.time() - t0:.0f} s; peak RSS {peak_gb():.2f} GB"
    )
    assert "last_hidden_state" in names
    del s
    gc.collect()
    llm = template_llm(cfg)  # one layer at the real width; its weights are replaced layer by layer
    layer = llm.model.layers[0]
    t0 = time.time()
    with torch.no_grad():
        pos = torch.arange(S)[None]
        cos_sin = llm.model.rotary_emb(emb, pos)
        mask = torch.full((S, S), torch.finfo(torch.float32).min).triu(1)[None, None]
        # with --perturb, the same layers again with their weights rounded as w8a8's and int4's are: what that rounding
        # alone does to these layers, whatever the bundle's kernels do
        perturbed = dict.fromkeys(PERTURB, emb) if a.perturb else {}
        trace = []
        h = emb
        for i in range(L):
            weights = {name: src.get(f"model.layers.{i}.{name}").float() for name, _ in layer.named_parameters()}
            src.release()

            def forward(x, transform, weights=weights):
                for name, p in layer.named_parameters():
                    p.copy_(transform(weights[name]))
                out = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
                return out[0] if isinstance(out, tuple) else out

            h = forward(h, lambda w: w)
            for kind in perturbed:
                perturbed[kind] = forward(perturbed[kind], PERTURB[kind])
            if perturbed and (i + 1) in (1, 2, 4, 8, 16, 32, L):
                trace.append(f"{i + 1}: " + ", ".join(f"{k} {rel_error(v, h):.4f}" for k, v in perturbed.items()))
        llm.model.norm.weight.copy_(src.get("model.norm.weight").float())
        want = llm.model.norm(h).numpy()
        if perturbed:
            print("relative error of the hidden state after N fp32 layers, weights perturbed: " + "; ".join(trace))
    rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    worst = float((np.linalg.norm(got - want, axis=-1) / np.linalg.norm(want, axis=-1)).max())
    print(
        f"{manifest['llm']['weights']} bundle vs fp32 layers ({L} layers, {S} positions; fp32 in {time.time() - t0:.0f} s): "
        f"relative error of the last hidden state {rel:.4f} (worst position {worst:.4f}); peak RSS {peak_gb():.2f} GB"
    )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("truncated")
    t.add_argument("--root", required=True, type=Path)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--new-tokens", type=int, default=8)
    q = sub.add_parser("layers")
    q.add_argument("--checkpoint", required=True, type=Path)
    q.add_argument("--bundle", required=True, type=Path)
    q.add_argument("--positions", type=int, default=16)
    q.add_argument("--perturb", action="store_true", help="also trace w8a8- and int4-rounded weights in PyTorch")
    a = ap.parse_args(argv)
    return truncated(a) if a.cmd == "truncated" else layers(a)


if __name__ == "__main__":
    sys.exit(main())
