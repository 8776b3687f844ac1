"""python -m lisa_export export --checkpoint DIR --clip DIR --out BUNDLE [--layout 7b|13b] [--weights ...]
python -m lisa_export reference --checkpoint DIR --clip DIR --image FILE --prompt TEXT [--history F.json]
                                [--assistant-prefix TEXT] [--max-new-tokens N] --json"""

from __future__ import annotations

import argparse
import json
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
    e.add_argument(
        "--weights",
        choices=["float32", "float16", "int8", "int4", "w8a8"],
        default="float32",
        help="language-model weights: int8/int4 weight-only MatMulNBits (block 32); w8a8 int8 weights and "
        "activations (DynamicQuantizeMatMul, fastest on CPUs with VNNI/AMX); SAM and CLIP stay fp32. float16: every "
        "graph but SAM's mask decoder in fp16, for GPUs (docs/gpu.md)",
    )
    e.add_argument("--variant", help="variant name for the manifest (default: from the layout)")
    e.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    e.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="export the decoder layer by layer from the checkpoint, in memory that does not grow with the model "
        "(default: for language models over 4 GiB of fp32 weights)",
    )
    r = sub.add_parser(
        "reference",
        help="run the PyTorch reference (LISA's decode, pre-processing, prompt and greedy "
        "decoding) on a checkpoint and print the result JSON of `reason-segment "
        "segment --json`",
    )
    r.add_argument("--checkpoint", required=True, help="LISA checkpoint folder")
    r.add_argument("--clip", required=True, help="CLIP ViT-L/14 folder")
    r.add_argument("--image", required=True, type=Path)
    r.add_argument("--prompt", required=True)
    r.add_argument(
        "--history", type=Path, help='JSON array of {"user", "assistant"} objects or [user, assistant] pairs'
    )
    r.add_argument("--assistant-prefix", default="", help="text forced at the start of the answer")
    r.add_argument("--max-new-tokens", type=int, default=512)
    r.add_argument("--json", action="store_true", required=True, help="print the result JSON (the only output form)")
    a = ap.parse_args(argv)
    from .model import CheckpointError, HubUnreachable

    if a.cmd == "reference":
        try:
            return reference(a)
        except (CheckpointError, HubUnreachable, ValueError, OSError) as err:
            print(f"lisa_export: {err}", file=sys.stderr)
            return 1
    try:
        import resource
        import time

        from .export import export_bundle

        t0 = time.time()
        out = export_bundle(
            a.checkpoint,
            a.clip,
            a.out,
            layout=a.layout,
            weights=a.weights,
            variant=a.variant,
            force=a.force,
            log=lambda m: print(m, file=sys.stderr),
            stream=a.stream,
        )
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"export: peak RSS {rss / 1e9:.2f} GB, {time.time() - t0:.0f} s, wrote {written / 1e9:.2f} GB ({a.weights})"
        )
    except (CheckpointError, HubUnreachable, FileExistsError) as err:
        print(f"lisa_export: {err}", file=sys.stderr)
        return 1
    return 0


def read_history(path: Path | None) -> list[tuple[str, str]]:
    if path is None:
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    turns = (
        [(t["user"], t["assistant"]) if isinstance(t, dict) else tuple(t) for t in raw]
        if isinstance(raw, list)
        else None
    )
    if turns is None or not all(len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns):
        raise ValueError(
            f'--history {path} must be a JSON array of {{"user", "assistant"}} objects or [user, assistant] pairs'
        )
    return turns


def reference(a) -> int:
    import torch

    from .export import detect_layout, token_spec
    from .model import load_lisa, resolve_folder
    from .reference import segment_result
    from .tokenizer import load_slow_tokenizer

    history = read_history(a.history)
    folder = resolve_folder(a.checkpoint)
    tokenizer = load_slow_tokenizer(folder)
    layout = detect_layout(tokenizer)
    lisa, folder = load_lisa(folder, a.clip, layout=layout, tokenizer_len=len(tokenizer))
    torch.manual_seed(0)
    result = segment_result(
        lisa,
        tokenizer,
        token_spec(tokenizer, layout),
        a.image,
        a.prompt,
        history,
        a.assistant_prefix,
        a.max_new_tokens,
        model={"variant": f"pytorch-reference ({layout})", "bundle": str(a.checkpoint)},
    )
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
