"""python -m lisa_export export --checkpoint DIR --clip DIR --out BUNDLE [--layout 7b|13b] [--weights ...]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lisa_export")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="export a LISA checkpoint (Hugging Face layout) to a lisa-onnx/1 bundle")
    e.add_argument("--checkpoint", required=True, help="LISA checkpoint folder (or hub id, e.g. xinlai/LISA-7B-v1)")
    e.add_argument("--clip", required=True, help="CLIP ViT-L/14 folder (or hub id openai/clip-vit-large-patch14)")
    e.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    e.add_argument("--layout", choices=["7b", "13b"], help="check the tokenizer has this layout (default: detect)")
    e.add_argument("--weights", choices=["float32", "int8", "int4", "w8a8"], default="float32",
                   help="language-model weights: int8/int4 weight-only MatMulNBits (block 32); w8a8 int8 weights and "
                        "activations (DynamicQuantizeMatMul, fastest on CPUs with VNNI/AMX); SAM and CLIP stay fp32")
    e.add_argument("--variant", help="variant name for the manifest (default: from the layout)")
    e.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    a = ap.parse_args(argv)
    from .model import CheckpointError, HubUnreachable

    try:
        from .export import export_bundle

        export_bundle(a.checkpoint, a.clip, a.out, layout=a.layout, weights=a.weights, variant=a.variant,
                      force=a.force, log=lambda m: print(m, file=sys.stderr))
    except (CheckpointError, HubUnreachable, FileExistsError) as err:
        print(f"lisa_export: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
