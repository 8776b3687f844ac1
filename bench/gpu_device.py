"""The GPU figures of issue 11, for the lent GPU machine (Python with torch, transformers and onnx; no Node there, so
the host's own WebGPU path cannot run on it). One script, sized to finish in a few minutes:

    python bench/gpu_device.py [--layers 20] [--positions 500] [--new-tokens 32] [--peak-gbs 4800]
    python bench/gpu_device.py --tiny --device cpu      # the smoke test run on CPU-only machines

1. builds a random-weight LLaMA decoder of LISA's 1B bench shape (bench/reference_1b.py's dims: 1.02 B parameters) in
   fp16 on the GPU;
2. times greedy decoding with the KV cache on the device in torch: time to first token (the prefill of --positions
   positions) and ms per decode step, and the ratio of the weights' memory-bandwidth floor to that step time (--peak-gbs,
   default the H200's 4.8 TB/s; the script also measures a device-to-device copy);
3. exports the same decoder to ONNX (fp16, past/present KV) and, where this machine's onnxruntime has the CUDA or
   WebGPU provider, times its decode steps with the cache bound on the device (IO binding), counting the bytes copied
   between host and device per step (only the logits come back).
Prints one JSON document. Time to first mask is not measured here: SAM is not built by this script.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

DIMS = {"hidden_size": 2048, "num_hidden_layers": 20, "intermediate_size": 5504, "num_attention_heads": 16}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 2}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str) -> float | None:
    """Device-to-device copy, bytes read + written per second."""
    if not device.startswith("cuda"):
        return None
    a = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    sync(device)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        b.copy_(a)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() / best


class Step(torch.nn.Module):
    """One decoder step for export: ids, attention mask, positions and the past in; logits of the last position and the
    present out."""

    def __init__(self, llm, layers: int):
        super().__init__()
        self.llm, self.layers = llm, layers

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        # a 4D additive mask, used as given (transformers' own mask builder uses vmap, which the exporter cannot trace)
        s, t = input_ids.shape[1], attention_mask.shape[1]
        allowed = (torch.arange(t)[None] <= (torch.arange(s) + (t - s))[:, None]) & (attention_mask[:, None, :] != 0)
        dt = self.llm.lm_head.weight.dtype
        mask = torch.where(allowed, torch.zeros((), dtype=dt), torch.full((), torch.finfo(dt).min, dtype=dt))
        out = self.llm(
            input_ids=input_ids,
            attention_mask=mask.unsqueeze(1),
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        present = []
        for i in range(self.layers):
            k, v = (
                out.past_key_values[i]
                if not hasattr(out.past_key_values, "layers")
                else (
                    out.past_key_values.layers[i].keys,
                    out.past_key_values.layers[i].values,
                )
            )
            present += [k, v]
        return (out.logits[:, -1:], *present)


def torch_decode(llm, cfg, positions: int, new_tokens: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, cfg.vocab_size, (1, positions), generator=g).to(device)
    with torch.inference_mode():
        llm(input_ids=ids[:, :8], use_cache=True)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        out = llm(input_ids=ids, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        sync(device)
        ttft = time.perf_counter() - t0
        past = out.past_key_values
        steps = []
        tokens = [int(nxt)]
        for _ in range(new_tokens):
            t = time.perf_counter()
            out = llm(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(int(nxt))  # the argmax crosses to the host every step, as the Node host's does
            sync(device)
            steps.append(time.perf_counter() - t)
    steps.sort()
    return {"ttft_ms": ttft * 1e3, "step_ms_median": steps[len(steps) // 2] * 1e3, "tokens": tokens}


def onnx_decode(llm, cfg, layers: int, positions: int, new_tokens: int, device: str, tmp: Path) -> dict:
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        return {"skipped": f"onnxruntime is not installed here ({e})"}
    avail = ort.get_available_providers()
    provider = next((p for p in ("WebGpuExecutionProvider", "CUDAExecutionProvider") if p in avail), None)
    if provider is None and device != "cpu":
        return {"skipped": f"onnxruntime here has neither the WebGPU nor the CUDA provider ({avail})"}
    provider = provider or "CPUExecutionProvider"
    heads = cfg.num_attention_heads
    hd = cfg.hidden_size // heads
    dt = next(llm.parameters()).dtype
    past = [torch.zeros(1, heads, 1, hd, dtype=dt, device=device) for _ in range(2 * layers)]
    names_past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    names_present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    dyn = {"input_ids": {1: "S"}, "attention_mask": {1: "T"}, "position_ids": {1: "S"}}
    dyn.update({n: {2: "P"} for n in names_past})
    dyn.update({n: {2: "T"} for n in names_present})
    path = tmp / "decoder.onnx"
    with torch.inference_mode():
        torch.onnx.export(
            Step(llm, layers),
            (
                torch.ones(1, 1, dtype=torch.int64, device=device),
                torch.ones(1, 2, dtype=torch.int64, device=device),
                torch.ones(1, 1, dtype=torch.int64, device=device),
                *past,
            ),
            str(path),
            input_names=["input_ids", "attention_mask", "position_ids", *names_past],
            output_names=["logits", *names_present],
            dynamic_axes=dyn,
            opset_version=17,
            dynamo=False,
            external_data=True,
        )
    sess = ort.InferenceSession(str(path), providers=[provider])
    loc = (
        "cuda"
        if provider == "CUDAExecutionProvider"
        else ("webgpu" if provider == "WebGpuExecutionProvider" else "cpu")
    )
    np_dt = np.float16 if dt == torch.float16 else np.float32
    # the prefill runs once with an empty past; then every step binds the previous present as its past, on the device
    g = np.random.default_rng(0)
    ids = g.integers(3, cfg.vocab_size, (1, positions)).astype(np.int64)
    kv = [ort.OrtValue.ortvalue_from_numpy(np.zeros((1, heads, 0, hd), np_dt), loc, 0) for _ in names_past]
    steps, moved = [], []
    t_all = time.perf_counter()
    n = 0
    x = ids
    for step in range(new_tokens + 1):
        b = sess.io_binding()
        b.bind_cpu_input("input_ids", x)
        b.bind_cpu_input("attention_mask", np.ones((1, n + x.shape[1]), np.int64))
        b.bind_cpu_input("position_ids", np.arange(n, n + x.shape[1], dtype=np.int64)[None])
        for name, v in zip(names_past, kv):
            b.bind_ortvalue_input(name, v)
        b.bind_output("logits", "cpu")
        for name in names_present:
            b.bind_output(name, loc)
        t = time.perf_counter()
        sess.run_with_iobinding(b)
        outs = b.get_outputs()
        logits = outs[0].numpy()
        nxt = np.array([[int(logits[0, -1].argmax())]], np.int64)  # the next step's input
        dt_s = time.perf_counter() - t
        if step == 0:
            ttft = dt_s
        else:
            steps.append(dt_s)
            moved.append(x.nbytes + 8 * (n + 1) + 8 + logits.nbytes)
        kv = outs[1:]
        n += x.shape[1]
        x = nxt
    steps.sort()
    return {
        "provider": provider,
        "ttft_ms": ttft * 1e3,
        "step_ms_median": steps[len(steps) // 2] * 1e3 if steps else None,
        "host_device_bytes_per_step": max(moved) if moved else None,
        "total_s": time.perf_counter() - t_all,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny dims: the smoke test on a CPU-only machine")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=DIMS["num_hidden_layers"])
    ap.add_argument("--positions", type=int, default=500)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--peak-gbs", type=float, default=4800.0, help="the GPU's memory bandwidth, GB/s (H200: 4800)")
    ap.add_argument("--no-onnx", action="store_true")
    a = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    dims = dict(TINY if a.tiny else DIMS)
    if not a.tiny:
        dims["num_hidden_layers"] = a.layers
    cfg = LlamaConfig(vocab_size=32003, max_position_embeddings=4096, **dims)
    torch.manual_seed(0)
    dtype = torch.float16 if a.device.startswith("cuda") else torch.float32
    llm = LlamaForCausalLM(cfg).to(dtype).to(a.device).eval()
    params = sum(p.numel() for p in llm.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())
    res = {
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else a.device,
        "date": time.strftime("%Y-%m-%d"),
        "params": params,
        "weight_bytes": weight_bytes,
        "dtype": str(dtype),
        "positions": a.positions,
        "new_tokens": a.new_tokens,
    }
    bw = copy_bandwidth(a.device)
    res["copy_bandwidth_gbs"] = bw / 1e9 if bw else None
    t = torch_decode(llm, cfg, a.positions, a.new_tokens, a.device)
    floor_ms = weight_bytes / (a.peak_gbs * 1e9) * 1e3
    res["torch"] = {
        **{k: v for k, v in t.items() if k != "tokens"},
        "roofline_ms": floor_ms,
        "roofline_over_step": floor_ms / t["step_ms_median"],
    }
    if not a.no_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            o = onnx_decode(llm, cfg, cfg.num_hidden_layers, a.positions, a.new_tokens, a.device, Path(tmp))
        if o.get("step_ms_median"):
            o["roofline_over_step"] = floor_ms / o["step_ms_median"]
        res["onnxruntime"] = o
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
