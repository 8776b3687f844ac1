"""Random-weight LISA checkpoints at the real dimensions, exported in bounded memory.

`npm run export:random -- --shape 7b|13b --seed N --out BUNDLE [--weights ...] [--layers N] [--format bin|safetensors]`

Writes a checkpoint folder with the key names, shapes, dtype (bf16) and 4.31-era files of LISA-7B-v1 or
LISA-13B-llama2-v1 (LLaMA + LISA's projector, text_hidden_fcs and SAM ViT-H; CLIP ViT-L/14-224 in its own folder, as
LISA loads it), shard by shard as the published ones are (`pytorch_model-0000k-of-0000n.bin` + index, or safetensors
shards + index), never holding more than one shard in memory; then exports it with the streaming path in a child
process and prints that process's peak RSS, the time and the bytes written.  Every tensor's values come from
(seed, key) alone, so a checkpoint cut to fewer layers (`--layers 2`) holds the same first layers as the full one.
No hub is needed: the tokenizer is a 32000-piece SentencePiece model trained on the committed corpus.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig

from .export import WEIGHTS
from .model import Lisa, SamDims

# SAM ViT-H as segment_anything.build_sam_vit_h builds it
SAM_VIT_H = SamDims(
    embed_dim=1280,
    depth=32,
    num_heads=16,
    mlp_ratio=4.0,
    out_chans=256,
    window_size=14,
    global_attn_indexes=[7, 15, 23, 31],
    qkv_bias=True,
    use_abs_pos=True,
    use_rel_pos=True,
    mask_in_chans=16,
    dec_depth=2,
    dec_mlp_dim=2048,
    dec_heads=8,
    num_multimask_outputs=3,
    iou_head_depth=3,
    iou_head_hidden_dim=256,
)
# LLaMA-7B (LLaVA-Lightning-7B-v1-1) and LLaMA-2-13B (llava-llama-2-13b-chat-lightning-preview); docs/bundle-format.md
SHAPES = {
    "7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 2048,
    },
    "13b": {
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 4096,
    },
}
VOCAB_BASE = 32000  # LLaMA's SentencePiece pieces; + the layout's added tokens = 32004 (7b) / 32003 (13b)
# openai/clip-vit-large-patch14's vision tower
CLIP_L14 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
SHARD_BYTES = 2 << 30  # smaller than the published shards (~10 GB), so writing one stays well inside 24 GB
STAMP = "random-checkpoint.json"


POOL = 1 << 26  # values: one seeded N(0, 0.02) pool per seed, each tensor a slice at an offset hashed from its key


@functools.cache
def _pool(seed: int) -> torch.Tensor:
    return torch.randn(POOL, generator=torch.Generator().manual_seed(seed)).mul_(0.02).to(torch.bfloat16)


def tensor_for(seed: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """bf16, deterministic from (seed, key); norms and LayerNorm scales near 1.  Drawing 7 B normal numbers would take
    this shared 2-core machine most of an hour: slices of one 64 M pool are memory copies."""
    n = int(torch.Size(shape).numel())
    off = int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little") % POOL
    pool = _pool(seed)
    parts, need = [pool[off:]], n - (POOL - off)
    while need > 0:
        parts.append(pool[: min(need, POOL)])
        need -= POOL
    t = torch.cat(parts)[:n].reshape(shape) if len(parts) > 1 else pool[off : off + n].reshape(shape).clone()
    if key.endswith(("norm.weight", "layernorm.weight")) or (key.endswith(".weight") and len(shape) == 1):
        t = (t.float() + 1.0).to(torch.bfloat16)
    return t


def lisa_shapes(shape: str, layers: int | None) -> tuple[LlamaConfig, CLIPVisionConfig, dict[str, tuple[int, ...]]]:
    from .model import LAYOUT_ADDED_TOKENS

    dims = dict(SHAPES[shape])
    if layers is not None:
        dims["num_hidden_layers"] = layers
    llm_cfg = LlamaConfig(
        vocab_size=VOCAB_BASE + len(LAYOUT_ADDED_TOKENS[shape]),
        **dims,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    clip_cfg = CLIPVisionConfig(**CLIP_L14)
    with torch.device("meta"):
        lisa = Lisa(llm_cfg, clip_cfg, SAM_VIT_H, meta_llm=True)
        clip_shapes = {k: tuple(v.shape) for k, v in lisa.clip.state_dict().items() if k.startswith("vision_model.")}
    shapes = lisa.lisa_expected_shapes()
    # what transformers 4.31 saved with every LLaMA layer (a persistent buffer then); the exporter ignores it
    D = dims["hidden_size"] // dims["num_attention_heads"]
    for i in range(dims["num_hidden_layers"]):
        shapes[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = (D // 2,)
    return llm_cfg, clip_cfg, {"lisa": shapes, "clip": clip_shapes}


def write_shards(folder: Path, shapes: dict[str, tuple[int, ...]], seed: int, fmt: str, log=print) -> int:
    """Shards of at most SHARD_BYTES in key order, with the index json transformers writes; returns total bytes."""
    from safetensors.torch import save_file

    groups: list[list[str]] = [[]]
    size = 0
    for k, shp in shapes.items():
        n = 2 * int(torch.Size(shp).numel())
        if groups[-1] and size + n > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += n
    total, weight_map = 0, {}
    for j, keys in enumerate(groups):
        name = (
            f"pytorch_model-{j + 1:05d}-of-{len(groups):05d}.bin"
            if fmt == "bin"
            else f"model-{j + 1:05d}-of-{len(groups):05d}.safetensors"
        )
        sd = {}
        for k in keys:
            if k.endswith("rotary_emb.inv_freq"):
                d = shapes[k][0] * 2
                sd[k] = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
            else:
                sd[k] = tensor_for(seed, k, shapes[k])
            total += sd[k].numel() * sd[k].element_size()
            weight_map[k] = name
        if fmt == "bin":
            torch.save(sd, folder / name)
        else:
            save_file(sd, str(folder / name), metadata={"format": "pt"})
        del sd
        log(f"checkpoint: wrote {name} ({j + 1}/{len(groups)})")
    index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (folder / index).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True)
    )
    return total


def write_checkpoint(shape: str, seed: int, root: Path, layers: int | None, fmt: str, log=print) -> tuple[Path, Path]:
    """``root/lisa`` and ``root/clip``; kept and reused when ``root`` already holds the same (shape, seed, layers,
    format)."""
    from .tiny import write_clip_config, write_lisa_config
    from .tokenizer import load_slow_tokenizer, train_tiny_tokenizer

    stamp = {"shape": shape, "seed": seed, "layers": layers, "format": fmt, "values": "pool-1"}
    ckpt, clip_dir = root / "lisa", root / "clip"
    if (root / STAMP).exists() and json.loads((root / STAMP).read_text()) == stamp:
        log(f"checkpoint: reusing {root}")
        return ckpt, clip_dir
    if root.exists():
        shutil.rmtree(root)
    ckpt.mkdir(parents=True)
    clip_dir.mkdir(parents=True)
    tok_dir = train_tiny_tokenizer(root / "tokenizer", shape, seed, VOCAB_BASE)
    for f in Path(tok_dir).iterdir():
        shutil.copyfile(f, ckpt / f.name)
    shutil.rmtree(tok_dir)
    llm_cfg, clip_cfg, shapes = lisa_shapes(shape, layers)
    if len(load_slow_tokenizer(ckpt)) != llm_cfg.vocab_size:
        raise RuntimeError("tokenizer size does not match the vocabulary")
    t0 = time.time()
    n = write_shards(ckpt, shapes["lisa"], seed, fmt, log=log)
    # transformers 4.31's files beside the weights: the exporter reads config.json and the tokenizer, ignores the rest
    write_lisa_config(
        ckpt,
        llm_cfg,
        clip_cfg,
        SAM_VIT_H.out_chans,
        clip_dir,
        extra={"torch_dtype": "bfloat16", "transformers_version": "4.31.0", "_name_or_path": f"random-lisa-{shape}"},
    )
    (ckpt / "generation_config.json").write_text(
        json.dumps(
            {
                "_from_model_config": True,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "pad_token_id": 0,
                "transformers_version": "4.31.0",
            },
            indent=2,
        )
    )
    from safetensors.torch import save_file

    clip_sd = {k: tensor_for(seed, "clip/" + k, s).float() for k, s in shapes["clip"].items()}
    save_file(clip_sd, str(clip_dir / "model.safetensors"), metadata={"format": "pt"})
    del clip_sd
    write_clip_config(clip_dir, clip_cfg)
    (root / STAMP).write_text(json.dumps(stamp))
    log(f"checkpoint: {n / 1e9:.2f} GB in {time.time() - t0:.0f} s -> {ckpt}")
    return ckpt, clip_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lisa_export.realsize", description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    ap.add_argument("--weights", choices=WEIGHTS, default="w8a8")
    ap.add_argument("--layers", type=int, help="cut the language model to this many decoder layers")
    ap.add_argument("--format", choices=["bin", "safetensors"], default="bin", help="checkpoint shards (default .bin)")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        help="where the checkpoint goes (default: OUT.checkpoint); an existing one of the same arguments is reused",
    )
    ap.add_argument("--no-export", action="store_true", help="write the checkpoint only")
    a = ap.parse_args(argv)
    out = a.out.absolute()
    root = (a.checkpoint or out.with_name(out.name + ".checkpoint")).absolute()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    ckpt, clip_dir = write_checkpoint(a.shape, a.seed, root, a.layers, a.format, log=log)
    print(f"checkpoint writer: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f} GB")
    if a.no_export:
        return 0
    cmd = [
        sys.executable,
        "-m",
        "lisa_export",
        "export",
        "--checkpoint",
        str(ckpt),
        "--clip",
        str(clip_dir),
        "--out",
        str(out),
        "--layout",
        a.shape,
        "--weights",
        a.weights,
        "--stream",
        "--force",
    ]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
