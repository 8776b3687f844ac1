"""Peak memory of an export, relative to the bundle's weight bytes (goal <= 1.5).

Builds a random-weight LISA whose LLM has >= 1B parameters (hidden 2048, 20 layers, intermediate 5504; tiny SAM and
CLIP; the tiny tokenizer's vocabulary), saves it as a LISA checkpoint (safetensors), then runs
`python -m lisa_export export` in a child process and reports the child's peak RSS (getrusage ru_maxrss) divided by
the bytes of the bundle's weight files (.onnx + .onnx_data).  Not part of the test suite:

    models/export/venv run models/export/bench_memory.py [--layers 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--weights", default="float32")
    ap.add_argument("--tmp", default=None, help="folder for the checkpoint and bundle (default: a temp folder)")
    a = ap.parse_args()
    import torch
    from lisa_export.tiny import build_tiny_checkpoint

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="lisa-mem-", dir=a.tmp) as t:
        root = Path(t)
        t0 = time.time()
        ckpt, clip = build_tiny_checkpoint(
            "7b",
            1,
            root,
            llm_overrides={
                "hidden_size": a.hidden,
                "num_hidden_layers": a.layers,
                "intermediate_size": a.intermediate,
                "num_attention_heads": a.hidden // 128,
                "num_key_value_heads": a.hidden // 128,
            },
        )
        gc.collect()
        ck_bytes = sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))
        n_params = ck_bytes / 4
        print(
            f"checkpoint: {ck_bytes / 1e9:.2f} GB (~{n_params / 1e9:.2f} B fp32 parameters, SAM/CLIP tiny), "
            f"built in {time.time() - t0:.0f} s",
            flush=True,
        )
        out = root / "bundle"
        t0 = time.time()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "lisa_export",
                "export",
                "--checkpoint",
                str(ckpt),
                "--clip",
                str(clip),
                "--out",
                str(out),
                "--weights",
                a.weights,
            ],
            cwd=HERE,
        )
        if r.returncode != 0:
            return r.returncode
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        m = json.loads((out / "lisa.manifest.json").read_text())
        weight_bytes = sum(v["bytes"] for k, v in m["files"].items() if k.startswith("onnx/"))
        print(
            json.dumps(
                {
                    "parameters_b": round(n_params / 1e9, 3),
                    "export_seconds": round(time.time() - t0, 1),
                    "peak_rss_gb": round(peak / 1e9, 3),
                    "bundle_weight_gb": round(weight_bytes / 1e9, 3),
                    "ratio": round(peak / weight_bytes, 3),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
