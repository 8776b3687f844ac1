"""The PyTorch side of `npm run bench -- --shape 7b|13b`: the reference on a real-size checkpoint in bf16 with its KV
cache, as LISA's chat.py `--precision bf16` runs on a CPU (every part in bf16), one request, torch on 2 threads.

    models/export/venv run bench/reference_shape.py --checkpoint DIR/lisa --clip DIR/clip --image F --prompt P \
        --prefix P --new-tokens N   -> prints one JSON line of figures

The request runs in the reference's order (CLIP, prefill, decoding, then SAM's image encoder and mask decoder), timed
by hooks on the language model and SAM's encoder so that one request gives every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def high_water_rss() -> int:
    """This process's own peak RSS (VmHWM); getrusage's ru_maxrss keeps the parent's RSS at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--clip", required=True, type=Path)
    ap.add_argument("--image", required=True, type=Path)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--new-tokens", type=int, default=8)
    a = ap.parse_args()
    from lisa_export.export import token_spec
    from lisa_export.model import load_lisa
    from lisa_export.reference import run
    from lisa_export.tokenizer import load_slow_tokenizer
    from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom

    # LISA's fork of SAM casts the positional encoding's coordinates to its matrix's dtype (its prompt_encoder.py);
    # the official package does not, and bf16 needs it
    official = PositionEmbeddingRandom._pe_encoding
    PositionEmbeddingRandom._pe_encoding = lambda pe, c: official(
        pe, c.to(pe.positional_encoding_gaussian_matrix.dtype)
    )
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    tok = load_slow_tokenizer(a.checkpoint)
    lisa, _ = load_lisa(a.checkpoint, a.clip, dtype=torch.bfloat16)
    load_ms = 1000 * (time.perf_counter() - t0)

    llm_calls: list[float] = []  # end of each language-model forward: the prefill, then one per decode step
    sam: dict[str, float] = {}

    def stamp(into, key):  # a hook that returns None leaves the module's input and output as they are
        def hook(*_):
            into[key] = time.perf_counter()

        return hook

    lisa.llm.model.register_forward_hook(lambda *_: llm_calls.append(time.perf_counter()))
    lisa.image_encoder.register_forward_pre_hook(stamp(sam, "start"))
    lisa.image_encoder.register_forward_hook(stamp(sam, "end"))
    layout = "13b" if lisa.llm.config.hidden_size == 5120 else "7b"
    start = time.perf_counter()
    r = run(lisa, tok, token_spec(tok, layout), a.image, a.prompt, [], a.prefix, a.new_tokens, use_cache=True)
    end = time.perf_counter()
    steps = [b - c for c, b in zip(llm_calls, llm_calls[1:])]
    print(
        json.dumps(
            {
                "loadMs": load_ms,
                "peakRss": high_water_rss(),
                "ttftMs": 1000 * (llm_calls[0] - start),
                "stepMs": 1000 * sum(steps) / max(1, len(steps)),
                "samEncoderMs": 1000 * (sam["end"] - sam["start"]),
                "firstMaskMs": 1000 * (end - start),
                "newTokens": len(r.gen.output_ids),
                # what a decode step reads: every weight of the language model but the embedding table's other rows
                "weightBytes": sum(
                    p.numel() * p.element_size() for n, p in lisa.llm.named_parameters() if "embed_tokens" not in n
                ),
                "masks": int(r.masks.shape[0]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
