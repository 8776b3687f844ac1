"""The PyTorch side of `npm run bench`: builds (once, cached) a random-weight LISA whose language model has >= 1B
parameters, exports it with the project's exporter, and times the reference runner on it.

    models/export/venv run bench/reference_1b.py build --root DIR [--weights int8]  -> prints {"bundle", "checkpoint", "clip"}
    models/export/venv run bench/reference_1b.py time --root DIR --image F --prompt P --new-tokens N [--w8a8]
        -> prints {"cached_s", "no_cache_s", "output_ids", ["w8a8_cached_s", "w8a8_output_ids"], ...}

Timing covers what one request costs the reference: pre-processing, both image encoders, greedy decoding and the
mask decoder, with torch on 2 threads (the machine's cores; ONNX Runtime uses the same number).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

LLM = {
    "hidden_size": 2048,
    "num_hidden_layers": 20,
    "intermediate_size": 5504,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
}


def build(root: Path, weights: str = "float32") -> dict:
    """The checkpoint (once) and its bundle with the given weight type (once per type)."""
    from lisa_export.tiny import build_tiny_checkpoint

    done = root / "ready.json"
    if done.exists():
        info = json.loads(done.read_text())
    else:
        ckpt, clip = build_tiny_checkpoint("7b", 1, root, llm_overrides=LLM)
        info = {"checkpoint": str(ckpt), "clip": str(clip)}
    bundle = root / ("bundle" if weights == "float32" else f"bundle-{weights}")
    manifest = bundle / "lisa.manifest.json"
    # re-export a bundle made before the decoder had its new_key_values outputs (the host's fast KV path needs them)
    if (
        not manifest.exists()
        or "new_key_values.0.key" not in json.loads(manifest.read_text())["graphs"]["decoder"]["outputs"]
    ):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lisa_export",
                "export",
                "--checkpoint",
                info["checkpoint"],
                "--clip",
                info["clip"],
                "--out",
                str(bundle),
                "--weights",
                weights,
                "--force",
            ],
            check=True,
        )
    info[f"bundle-{weights}"] = str(bundle)
    done.write_text(json.dumps(info))
    return {**info, "bundle": str(bundle)}


@torch.no_grad()
def time_reference(info: dict, image: str, prompt: str, new_tokens: int, w8a8_bundle: str | None = None) -> dict:
    from lisa_export import reference as R
    from lisa_export.model import load_lisa
    from lisa_export.tokenizer import load_slow_tokenizer, tokenize_prompt

    lisa, folder = load_lisa(info["checkpoint"], info["clip"])
    lisa.eval()
    tok = load_slow_tokenizer(Path(folder))
    seg_id = tok.convert_tokens_to_ids("[SEG]")
    ids = list(tokenize_prompt(tok, R.build_prompt(prompt)))
    params = sum(p.numel() for p in lisa.llm.parameters())

    def request(use_cache: bool, n: int) -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        img = R.load_image(image)
        clip_pv = R.clip_preprocess(img)
        sam_pv, resize_size, orig_size = R.sam_preprocess(img)
        gen = R.generate(lisa, ids, clip_pv, seg_id, n, eos_id=2, use_cache=use_cache)
        seg = lisa.seg_project(gen.seg_hidden)
        R.masks_for(lisa, sam_pv, seg, resize_size, orig_size)
        return time.perf_counter() - t0, gen.output_ids

    request(True, 2)  # warm-up: first-call allocations and thread pools
    cached_s, out_ids = request(True, new_tokens)
    no_cache_s, no_cache_ids = request(False, new_tokens)
    result = {
        "cached_s": cached_s,
        "no_cache_s": no_cache_s,
        "no_cache_output_ids": no_cache_ids,
        "new_tokens": new_tokens,
        "output_ids": out_ids,
        "prompt_tokens": len(ids) - 1 + 256,
        "llm_parameters": params,
        "torch_threads": torch.get_num_threads(),
    }
    if w8a8_bundle:
        # torch's own int8 path for the like-for-like comparison with our w8a8 bundle: every Linear of the LLM
        # (lm_head included) with int8 weights per channel and activations quantised at run time (fbgemm)
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, one per module
            warnings.simplefilter("ignore")
            lisa.llm = torch.ao.quantization.quantize_dynamic(lisa.llm, {torch.nn.Linear}, dtype=torch.qint8)
        request(True, 2)
        result["w8a8_cached_s"], result["w8a8_output_ids"] = request(True, new_tokens)
        # free-running tokens part ways at the first flip; the per-position argmax with the fp32 answer fed
        # (teacher forcing) says how often our w8a8 bundle's decoder picks fp32's token
        from lisa_export.ort_run import OrtBundle

        forced = OrtBundle(w8a8_bundle).teacher_forced(ids, R.clip_preprocess(R.load_image(image)), out_ids)
        result["w8a8_bundle_teacher_forced"] = forced
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["build", "time"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--image")
    ap.add_argument("--prompt")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--w8a8", action="store_true", help="also time the LLM quantised by torch's quantize_dynamic")
    ap.add_argument("--weights", default="float32", choices=["float32", "int8", "int4", "w8a8"])
    a = ap.parse_args()
    torch.set_num_threads(2)
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    info = build(root, a.weights)
    if a.command == "build":
        print(json.dumps(info))
    else:
        print(
            json.dumps(
                time_reference(info, a.image, a.prompt, a.new_tokens, build(root, "w8a8")["bundle"] if a.w8a8 else None)
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
