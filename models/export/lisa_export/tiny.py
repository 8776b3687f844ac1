"""Tiny random-weight LISA fixtures: `npm run export:tiny -- --layout 7b --seed 1 --out DIR`.

Builds a LISA with the real module classes and dimensions drawn from (layout, seed), saves it as a LISA-layout
checkpoint folder (safetensors with LISA's key names + config.json + the slow tokenizer) and a CLIP folder, exports it
through the same path as a real checkpoint (export.export_bundle), and writes goldens.json from the PyTorch reference
on real photographs.  Same arguments -> bit-identical bundle, except for the last bits of goldens.json's floats, which
differ between CPU makes (and so goldens.json's checksum in the manifest).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig

from .export import CLIP_MEAN, CLIP_STD
from .model import Lisa, SamDims

IMAGES = [  # (name in the bundle, scikit-image loader): different sizes and aspect ratios
    ("astronaut", "astronaut"),  # 512x512
    ("coffee", "coffee"),  # 400x600 (landscape)
    ("chelsea", "chelsea"),  # 300x451
]
# Photos of other shapes, as JPEG: a portrait (240x512: its CLIP resize is one where Pillow 13's pass order would differ
# from LISA's Pillow 9.4.0) and a landscape photo stored rotated, with EXIF orientation 6.
PORTRAIT, ROTATED = "astronaut-portrait.jpg", "coffee-exif6.jpg"

CASES = [
    {
        "name": "astronaut-en",
        "image": "astronaut",
        "prompt": "Where is the astronaut's helmet in this image? Please output segmentation mask.",
        "history": [],
        "assistant_prefix": "",
    },
    {
        "name": "coffee-zh",
        "image": "coffee",
        "prompt": "请把图中的咖啡杯分割出来，并解释原因。",
        "history": [],
        "assistant_prefix": "",
    },
    {
        "name": "chelsea-history",
        "image": "chelsea",
        "prompt": "Now segment its face.",
        "history": [["What animal is in the picture?", "It is a cat sitting on the floor."]],
        "assistant_prefix": "",
    },
    # a literal <unk> in the prompt tokenizes to id 0, whose attention-mask entry must be 0 for the whole generation
    {
        "name": "astronaut-unk-mask",
        "image": "astronaut",
        "prompt": "Is there a <unk> on the left? Segment it.",
        "history": [],
        "assistant_prefix": "",
    },
    {
        "name": "coffee-two-seg",
        "image": "coffee",
        "prompt": "Segment the cup and the spoon.",
        "history": [],
        "assistant_prefix": "Sure, [SEG] and [SEG].",
    },
    # empty messages render as their bare role (LISA's llava_v1: "ASSISTANT:USER:" and "USER:ASSISTANT:")
    {
        "name": "chelsea-empty-messages",
        "image": "chelsea",
        "prompt": "Segment the cat.",
        "history": [["What is this?", ""], ["", "A cat."]],
        "assistant_prefix": "",
    },
    {
        "name": "portrait-seg",
        "image": PORTRAIT,
        "prompt": "Where is the astronaut's face?",
        "history": [],
        "assistant_prefix": "Sure, [SEG].",
    },
    {
        "name": "exif-rotated-seg",
        "image": ROTATED,
        "prompt": "Segment the cup.",
        "history": [],
        "assistant_prefix": "It is [SEG].",
    },
]
MAX_NEW_TOKENS = 40


def tiny_dims(layout: str, seed: int) -> dict:
    rng = random.Random(f"lisa-tiny/{layout}/{seed}")
    heads = rng.choice([2, 4])
    head_dim = 32
    hidden = heads * head_dim
    kv = rng.choice([heads, heads // 2])
    C = rng.choice([32, 64])
    return {
        "llm": {
            "hidden_size": hidden,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "num_hidden_layers": rng.choice([2, 3]),
            "intermediate_size": rng.choice([2, 3]) * hidden,
            "rms_norm_eps": 1e-6 if layout == "7b" else 1e-5,
            "max_position_embeddings": 2048 if layout == "7b" else 4096,
        },
        "vocab_base": rng.choice([768, 1024]),
        "clip": {
            "hidden_size": rng.choice([32, 64]),
            "num_hidden_layers": rng.choice([2, 3]),
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
        },
        "sam": SamDims(
            embed_dim=rng.choice([32, 48]),
            depth=2,
            num_heads=2,
            mlp_ratio=rng.choice([2.0, 4.0]),
            out_chans=C,
            window_size=14,
            global_attn_indexes=[1],
            qkv_bias=True,
            use_abs_pos=True,
            use_rel_pos=True,
            mask_in_chans=16,
            dec_depth=2,
            dec_mlp_dim=rng.choice([64, 128]),
            dec_heads=8,
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=rng.choice([32, 64]),
        ),
    }


def tiny_configs(dims: dict, vocab: int, initializer_range: float) -> tuple[LlamaConfig, CLIPVisionConfig]:
    """The LLaMA and CLIP vision configs of a tiny LISA with these dims (tiny_dims' shape)."""
    llm_cfg = LlamaConfig(
        vocab_size=vocab,
        **dims["llm"],
        initializer_range=initializer_range,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    c = dims["clip"]
    clip_cfg = CLIPVisionConfig(
        hidden_size=c["hidden_size"],
        intermediate_size=4 * c["hidden_size"],
        num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"],
        image_size=224,
        patch_size=14,
        projection_dim=c["hidden_size"],
    )
    return llm_cfg, clip_cfg


def write_lisa_config(
    ckpt: Path,
    llm_cfg: LlamaConfig,
    clip_cfg: CLIPVisionConfig,
    out_dim: int,
    clip_dir: Path,
    extra: dict | None = None,
) -> None:
    """config.json of a LISA checkpoint folder (``extra``: more fields, e.g. a real checkpoint's torch_dtype)."""
    cfg = llm_cfg.to_dict()
    # what a real LISA checkpoint's config.json carries (LISAForCausalLM.from_pretrained needs train_mask_decoder,
    # out_dim, mm_hidden_size and a loadable vision tower; chat.py reads vision_tower)
    cfg.update(
        {
            "architectures": ["LISAForCausalLM"],
            "model_type": "llava",
            "mm_vision_select_layer": -2,
            "mm_vision_select_feature": "patch",
            "mm_use_im_start_end": True,
            "mm_use_im_patch_token": False,
            "mm_hidden_size": clip_cfg.hidden_size,
            "out_dim": out_dim,
            "train_mask_decoder": True,
            "tune_mm_mlp_adapter": False,
            "freeze_mm_mlp_adapter": False,
            "use_mm_proj": True,
            "image_aspect_ratio": "square",
            "image_grid_pinpoints": None,
            "vision_tower": str(clip_dir.resolve()),
            "mm_vision_tower": str(clip_dir.resolve()),
        }
    )
    for k in ("transformers_version", "_name_or_path"):
        cfg.pop(k, None)
    cfg.update(extra or {})
    (ckpt / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True))


def write_clip_config(clip_dir: Path, clip_cfg: CLIPVisionConfig) -> None:
    """config.json and openai/clip-vit-large-patch14's preprocessor_config.json of a CLIP folder."""
    ccfg = clip_cfg.to_dict()
    ccfg.pop("transformers_version", None)
    (clip_dir / "config.json").write_text(json.dumps(ccfg, indent=1, sort_keys=True))
    # openai/clip-vit-large-patch14's own preprocessor_config.json (chat.py loads CLIPImageProcessor from it)
    (clip_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": 224,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": CLIP_MEAN,
                "image_std": CLIP_STD,
                "resample": 3,
                "size": 224,
            },
            indent=1,
            sort_keys=True,
        )
    )


def build_tiny_checkpoint(layout: str, seed: int, root: Path, llm_overrides: dict | None = None) -> tuple[Path, Path]:
    """Write <root>/lisa (LISA checkpoint folder with tokenizer) and <root>/clip; return both.  ``llm_overrides``
    replaces LLM dims (bench_memory.py builds a >1B-parameter model this way)."""
    from .tokenizer import load_slow_tokenizer, train_tiny_tokenizer

    dims = tiny_dims(layout, seed)
    dims["llm"].update(llm_overrides or {})
    ckpt, clip_dir = root / "lisa", root / "clip"
    ckpt.mkdir(parents=True, exist_ok=True)
    clip_dir.mkdir(parents=True, exist_ok=True)
    tok_dir = Path(train_tiny_tokenizer(root / "tokenizer", layout, seed, dims["vocab_base"]))
    for f in tok_dir.iterdir():
        if f.is_file():
            shutil.copyfile(f, ckpt / f.name)
    vocab = len(load_slow_tokenizer(ckpt))
    llm_cfg, clip_cfg = tiny_configs(dims, vocab, initializer_range=0.05)
    torch.manual_seed(seed)
    with torch.no_grad():
        lisa = Lisa(llm_cfg, clip_cfg, dims["sam"])
        # SAM's defaults zero the position tables; give them values so the export carries real numbers
        for name, p in lisa.image_encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.normal_(0, 0.02)
        # default init gives mask logits of ~1e-2 that are positive almost everywhere; scale the hypernetworks'
        # last layer so masks have structure (some pixels in, some out) and logits of order 0.1-1
        for mlp in lisa.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10)
            mlp.layers[-1].bias.zero_()
    sd = {k: v.contiguous() for k, v in lisa.state_dict_lisa().items()}
    save_file(sd, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    write_lisa_config(ckpt, llm_cfg, clip_cfg, dims["sam"].out_chans, clip_dir)
    clip_sd = {
        "vision_model." + k[len("vision_model.") :]: v.contiguous()
        for k, v in lisa.clip.state_dict().items()
        if k.startswith("vision_model.")
    }
    save_file(clip_sd, str(clip_dir / "model.safetensors"), metadata={"format": "pt"})
    write_clip_config(clip_dir, clip_cfg)
    return ckpt, clip_dir


def write_images(images_dir: Path) -> dict[str, Path]:
    from PIL import Image
    from skimage import data

    images_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, loader in IMAGES:
        arr = getattr(data, loader)()
        p = images_dir / f"{name}.png"
        Image.fromarray(np.asarray(arr)).convert("RGB").save(p, format="PNG", optimize=False, compress_level=9)
        out[name] = p
    Image.fromarray(data.astronaut()).crop((150, 0, 390, 512)).save(images_dir / PORTRAIT, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: the stored pixels are the upright photo turned back
    Image.fromarray(data.coffee()).transpose(Image.Transpose.ROTATE_90).save(
        images_dir / ROTATED, quality=90, exif=exif.tobytes()
    )
    out[PORTRAIT], out[ROTATED] = images_dir / PORTRAIT, images_dir / ROTATED
    return out


def goldens_writer(bundle: Path, lisa, tokenizer, layout: str, tokens: dict) -> None:
    from .export import write_json
    from .reference import run_case

    images = write_images(bundle / "images")
    cases = []
    for case in CASES:
        r = run_case(
            lisa,
            tokenizer,
            tokens,
            images[case["image"]],
            case["prompt"],
            [tuple(h) for h in case["history"]],
            case["assistant_prefix"],
            MAX_NEW_TOKENS,
        )
        cases.append({"name": case["name"], "image": f"images/{images[case['image']].name}", **r})
    from .refine import refine_goldens

    write_json(
        bundle / "goldens.json",
        {"format": "lisa-goldens/1", "cases": cases, "refine": refine_goldens(lisa, cases, bundle)},
    )


def export_tiny(
    layout: str,
    seed: int,
    out: Path,
    weights: str = "float32",
    goldens: bool = True,
    log=print,
    keep_checkpoint: Path | None = None,
) -> Path:
    """``keep_checkpoint``: write the LISA checkpoint folder (``lisa/``) and its CLIP folder (``clip/``) there and keep
    them, for running LISA's own code or ``python -m lisa_export reference`` on them."""
    from .export import export_bundle

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="lisa-tiny-") as t:
        root = Path(t) if keep_checkpoint is None else Path(keep_checkpoint).absolute()
        ckpt, clip_dir = build_tiny_checkpoint(layout, seed, root)
        name = f"tiny-{layout}-seed{seed}"
        return export_bundle(
            ckpt,
            clip_dir,
            out,
            layout=layout,
            weights=weights,
            force=True,
            source_names={"checkpoint": name, "clip": f"tiny-clip-seed{seed}", "variant": name},
            extra=goldens_writer if goldens else None,
            log=log,
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lisa_export.tiny", description=__doc__.split("\n")[0])
    ap.add_argument("--layout", choices=["7b", "13b"], required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", choices=["float32", "float16", "int8", "int4", "w8a8"], default="float32")
    ap.add_argument("--no-goldens", action="store_true")
    ap.add_argument(
        "--keep-checkpoint",
        type=Path,
        metavar="DIR",
        help="keep the LISA checkpoint (DIR/lisa) and CLIP (DIR/clip) folders the bundle was exported from",
    )
    a = ap.parse_args(argv)
    # goldens are the fp32 PyTorch reference's outputs: written for float32 bundles only
    export_tiny(
        a.layout,
        a.seed,
        a.out,
        a.weights,
        goldens=not a.no_goldens and a.weights == "float32",
        keep_checkpoint=a.keep_checkpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
