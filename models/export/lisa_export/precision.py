"""fp16 weights for GPU bundles, and what each weight format suits.

``--weights float16`` converts the graphs to float16 weights and compute, keeping each graph's inputs and outputs
float32 (casts at the edges), so the host feeds and reads the same tensors as for an fp32 bundle and the manifest's I/O
contract does not change. SAM's mask decoders stay fp32. Measured on tiny-7b (seed 1) against its fp32 goldens, fed the
goldens' [SEG] embeddings (2026-11-30): all graphs fp16, mask IoU min 0.9985; mask decoder fp32, the rest fp16 (SAM's
image encoder included), min 0.9998; tokens 256/256 either way. The mask decoder is small and runs once per request,
so keeping it fp32 costs nothing per token.

Each graph is converted in memory (the whole fp32 graph and its fp16 copy), except a real-size decoder (1.5 times its
fp32 size in RAM): the streaming export (stream.py) converts its one-layer template and writes each layer's weights as
fp16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

# Which execution providers a bundle with these weights suits. fp16 is for GPUs (the CPU provider runs it, as the
# tests do, but has fp16 kernels for few ops); w8a8's DynamicQuantizeMatMul has no GPU kernel (a GPU session would run
# it on the CPU, copying activations every layer); MatMulNBits has CPU, CUDA and WebGPU kernels.
DEVICES = {
    "float32": ["cpu", "webgpu", "cuda"],
    "float16": ["webgpu", "cuda"],
    "int8": ["cpu", "webgpu", "cuda"],
    "int4": ["cpu", "webgpu", "cuda"],
    "w8a8": ["cpu"],
}

FLOAT16_GRAPHS = ("vision_encoder", "embed_tokens", "decoder", "seg_projector", "sam_image_encoder")


def graph_weights(weights: str, graph: str) -> str:
    """The weight format of one graph in a bundle exported with ``--weights weights``."""
    if weights == "float16":
        return "float16" if graph in FLOAT16_GRAPHS else "float32"
    if weights in ("int8", "int4", "w8a8"):
        return weights if graph == "decoder" else "float32"
    return "float32"


def float16_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with float16 weights and compute, its inputs and outputs kept fp32 (casts at the edges)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    logging.getLogger("onnxruntime.transformers.float16").setLevel(logging.WARNING)
    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)


def to_float16(onnx_path: Path, log=print) -> None:
    """Rewrites one graph (and its external data file, if it has one) with float16 weights and compute, fp32 I/O."""
    data = onnx_path.with_name(onnx_path.name + "_data")
    model = float16_model(onnx.load(str(onnx_path), load_external_data=True))
    if data.exists():
        data.unlink()
        onnx.save_model(
            model,
            str(onnx_path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(onnx_path))
    log(f"converted {onnx_path.name} to float16 weights")


def float16_bundle(src: Path, out: Path) -> Path:
    """A float16 copy of an exported float32 bundle (as ``--weights float16`` would export it), for a bundle whose
    checkpoint is not at hand: the trained fixture's, whose fp16 token agreement the WebGPU tests measure."""
    import json
    import shutil

    from .export import file_entry, validate_manifest, write_json

    shutil.copytree(src, out)
    manifest = json.loads((out / "lisa.manifest.json").read_text())
    if manifest["llm"]["weights"] != "float32":
        raise ValueError(f"{src} has {manifest['llm']['weights']} weights: convert a float32 bundle")
    for name, spec in manifest["graphs"].items():
        spec["weights"] = graph_weights("float16", name)
        if spec["weights"] == "float16":
            to_float16(out / spec["file"], log=lambda *_: None)
    manifest["files"] = {rel: file_entry(out / rel) for rel in manifest["files"]}
    manifest["llm"]["weights"] = "float16"
    manifest["devices"] = DEVICES["float16"]
    validate_manifest(manifest)
    write_json(out / "lisa.manifest.json", manifest)
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "float16":
        sys.exit("usage: python -m lisa_export.precision float16 SRC_BUNDLE OUT_DIR")
    print(float16_bundle(Path(sys.argv[2]), Path(sys.argv[3])))
