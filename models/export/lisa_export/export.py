"""A LISA checkpoint -> a `lisa-onnx/1` bundle (docs/bundle-format.md).

The bundle is built in a hidden sibling folder and renamed into place only at the very end, so a failed export never
leaves anything that looks like a bundle.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from . import __version__
from .graphs import (
    Decoder,
    EmbedTokens,
    SamImageEncoder,
    SamMaskDecoder,
    SamPromptDecoder,
    SegProjector,
    VisionEncoder,
)
from .model import LAYOUT_ADDED_TOKENS, LAYOUT_VARIANT, CheckpointError, Lisa, load_lisa, resolve_folder
from .precision import DEVICES, graph_weights, to_float16

OPSET = 17
MANIFEST = "lisa.manifest.json"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "bundle.schema.json"
SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions."
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SAM_MEAN = [123.675, 116.28, 103.53]
SAM_STD = [58.395, 57.12, 57.375]
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
WEIGHTS = ("float32", "float16", "int8", "int4", "w8a8")
# w8a8 weights use 7 bits (|q| <= 63). On x86 CPUs without VNNI, ONNX Runtime's u8s8 GEMM multiplies with
# VPMADDUBSW, which adds two uint8 x int8 products into a saturating int16: 255 * 127 * 2 overflows it, 255 * 63 * 2
# does not. ONNX Runtime's own quantiser calls this reduce_range. With 8-bit weights, a tiny bundle's teacher-forced
# agreement with fp32 fell from 0.98 (Xeon, VNNI) to 0.74 (EPYC, AVX2); a bundle is exported once and run anywhere.
W8A8_WEIGHT_MAX = 63


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(p: Path) -> dict:
    """A file's entry in the manifest's ``files``: what the host verifies before loading it."""
    return {"sha256": sha256_file(p), "bytes": p.stat().st_size}


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and layout
# ---------------------------------------------------------------------------------------------------------------------


def detect_layout(tokenizer) -> str:
    added = {tok: i for tok, i in tokenizer.get_added_vocab().items()}
    for layout, toks in LAYOUT_ADDED_TOKENS.items():
        if all(t in added for t in toks):
            order = sorted(toks, key=lambda t: added[t])
            if order == toks:
                return layout
    raise CheckpointError(
        f"the tokenizer's added tokens {sorted(added, key=added.get)} match neither layout: 7b "
        f"expects {LAYOUT_ADDED_TOKENS['7b']}, 13b expects {LAYOUT_ADDED_TOKENS['13b']}"
    )


def check_layout(tokenizer, layout: str) -> dict[str, int]:
    toks = LAYOUT_ADDED_TOKENS[layout]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in toks}
    base = len(tokenizer) - len(toks)
    want = {t: base + i for i, t in enumerate(toks)}
    if ids != want:
        raise CheckpointError(f"tokenizer added tokens {ids}; layout {layout} expects {want}")
    return ids


def token_spec(tokenizer, layout: str) -> dict:
    ids = check_layout(tokenizer, layout)
    seg = tokenizer("[SEG]", add_special_tokens=False).input_ids[0]  # as chat.py: never hard-coded
    if seg != ids["[SEG]"]:
        raise CheckpointError(f"tokenizing '[SEG]' gives {seg}; expected the added token id {ids['[SEG]']}")
    spec = {
        "bos": 1,
        "eos": 2,
        "unk": 0,
        "pad": 0,
        "seg": seg,
        "im_start": ids["<im_start>"],
        "im_end": ids["<im_end>"],
        "image_placeholder": -200,
        "num_image_tokens": 256,
        "mask_attention_for_ids": [0],
    }
    if "<im_patch>" in ids:
        spec["im_patch"] = ids["<im_patch>"]
    return spec


# ---------------------------------------------------------------------------------------------------------------------
# ONNX export helpers
# ---------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torch_export(module, args, path: Path, input_names, output_names, dynamic_axes):
    """torch.onnx.export with the TorchScript exporter (dynamo=False): deterministic node names, Linear weights
    pre-transposed into MatMul initializers (what ONNX Runtime's weight-only quantisers look for)."""
    module.eval()
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            module,
            tuple(args),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
            external_data=True,
        )


def externalize(onnx_path: Path, data_name: str) -> None:
    """Rewrite ``onnx_path`` so every initializer lives in one external file ``data_name`` beside it, streaming tensor
    by tensor (whether the exporter wrote them inline or as one file per tensor)."""
    folder = onnx_path.parent
    model = onnx.load(str(onnx_path), load_external_data=False)
    data_path = folder / data_name
    leftovers = []
    offset = 0
    with open(data_path, "wb") as out:
        tensors = list(model.graph.initializer)
        for node in model.graph.node:  # large Constant nodes are weights too
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    tensors.append(a.t)
        for t in tensors:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                src = folder / info["location"]
                with open(src, "rb") as f:
                    f.seek(int(info.get("offset", 0)))
                    raw = f.read(int(info["length"])) if "length" in info else f.read()
                leftovers.append(src)
            elif t.HasField("raw_data") and len(t.raw_data) >= 1024:
                raw = t.raw_data
            else:
                continue
            align = 4096 if len(raw) >= 4096 else 64
            pad = (-offset) % align
            out.write(b"\0" * pad)
            offset += pad
            out.write(raw)
            del t.external_data[:]
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            offset += len(raw)
            del raw
    for p in set(leftovers):
        if p != data_path and p.exists():
            p.unlink()
    onnx.save_model(model, str(onnx_path), save_as_external_data=False)


EXTERNAL_ABOVE = 256 << 20


def external_if_large(path: Path) -> None:
    """Weights inline in a graph are held twice by ONNX Runtime (the model's bytes and the initializers): at the 7B
    shape CLIP's graph loaded at 2.07 GB RSS for 1.18 GB of weights, and at 1.27 GB with them in external data."""
    if path.stat().st_size > EXTERNAL_ABOVE:
        externalize(path, path.name + "_data")


def _graph_io(model_path: Path) -> tuple[dict, dict]:
    m = onnx.load(str(model_path), load_external_data=False)
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT16: "float16"}

    def spec(vi):
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param)
        return {"dtype": names[vi.type.tensor_type.elem_type], "shape": dims}

    inits = {i.name for i in m.graph.initializer}
    return ({i.name: spec(i) for i in m.graph.input if i.name not in inits}, {o.name: spec(o) for o in m.graph.output})


def contract_shapes(lisa: Lisa) -> dict[str, dict[str, list]]:
    """The symbolic shapes of docs/bundle-format.md, per graph, for every input and output."""
    cfg = lisa.llm.config
    H, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    KV = cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or H // cfg.num_attention_heads
    C = lisa.sam_dims.out_chans
    dec = {
        "inputs_embeds": [1, "S", H],
        "attention_mask": [1, "P+S"],
        "position_ids": [1, "S"],
        "logits": [1, 1, V],
        "last_hidden_state": [1, "S", H],
    }
    for i in range(L):
        for kv in ("key", "value"):
            dec[f"past_key_values.{i}.{kv}"] = [1, KV, "P", D]
            dec[f"present.{i}.{kv}"] = [1, KV, "P+S", D]
            dec[f"new_key_values.{i}.{kv}"] = [1, KV, "S", D]
    return {
        "vision_encoder": {"pixel_values": [1, 3, 224, 224], "image_features": [1, 256, H]},
        "embed_tokens": {"input_ids": [1, "S"], "inputs_embeds": [1, "S", H]},
        "decoder": dec,
        "seg_projector": {"seg_hidden": ["N", H], "seg_embeddings": ["N", C]},
        "sam_image_encoder": {"pixel_values": [1, 3, 1024, 1024], "image_embeddings": [1, C, 64, 64]},
        "sam_mask_decoder": {
            "image_embeddings": [1, C, 64, 64],
            "seg_embeddings": ["N", C],
            "resize_size": [2],
            "orig_size": [2],
            "masks": ["N", 1, "h", "w"],
            "iou_predictions": ["N", 1],
            "low_res_masks": ["N", 1, 256, 256],
        },
        "sam_prompt_decoder": prompt_decoder_shapes(C),
    }


def prompt_decoder_shapes(C: int) -> dict[str, list]:
    return {
        "image_embeddings": [1, C, 64, 64],
        "seg_embeddings": ["N", C],
        "point_coords": ["N", "P", 2],
        "point_labels": ["N", "P"],
        "resize_size": [2],
        "orig_size": [2],
        "iou_predictions": ["N", 1],
        "low_res_masks": ["N", 1, 256, 256],
    }


def set_io_shapes(path: Path, shapes: dict[str, list]) -> None:
    """Write the contract's shapes (named symbolic dims) onto the graph's inputs and outputs."""
    m = onnx.load(str(path), load_external_data=False)
    seen = set()
    for vi in list(m.graph.input) + list(m.graph.output):
        if vi.name not in shapes:
            continue
        seen.add(vi.name)
        dims = vi.type.tensor_type.shape.dim
        want = shapes[vi.name]
        if len(dims) != len(want):
            raise RuntimeError(f"{path.name}: {vi.name} has rank {len(dims)}; the contract says {want}")
        for d, w in zip(dims, want):
            if isinstance(w, int):
                if d.HasField("dim_value") and d.dim_value != w:
                    raise RuntimeError(f"{path.name}: {vi.name} dim {d.dim_value} != contract {w}")
                d.Clear()
                d.dim_value = w
            else:
                d.Clear()
                d.dim_param = w
    inits = {i.name for i in m.graph.initializer}
    missing = set(shapes) - seen
    if missing:
        raise RuntimeError(f"{path.name}: no graph input/output named {sorted(missing)}")
    names = {vi.name for vi in list(m.graph.input) + list(m.graph.output)} - inits
    if names - set(shapes):
        raise RuntimeError(f"{path.name}: graph has inputs/outputs outside the contract: {sorted(names - set(shapes))}")
    onnx.save_model(m, str(path), save_as_external_data=False)


def export_decoder(lisa: Lisa, dec_path: Path, g: torch.Generator) -> None:
    """The decoder graph from PyTorch, weights in ``decoder.onnx_data`` beside it (also the one-layer template of
    stream.py's bounded-memory export)."""
    cfg = lisa.llm.config
    H, L = cfg.hidden_size, cfg.num_hidden_layers
    KV = cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or H // cfg.num_attention_heads
    S, P = 3, 2
    past = []
    names_in = ["inputs_embeds", "attention_mask", "position_ids"]
    names_out = ["logits", "last_hidden_state"]
    dyn = {
        "inputs_embeds": {1: "S"},
        "attention_mask": {1: "P+S"},
        "position_ids": {1: "S"},
        "last_hidden_state": {1: "S"},
    }
    for i in range(L):
        for kv in ("key", "value"):
            past.append(torch.zeros(1, KV, P, D))
            names_in.append(f"past_key_values.{i}.{kv}")
            names_out.append(f"present.{i}.{kv}")
            dyn[f"past_key_values.{i}.{kv}"] = {2: "P"}
            dyn[f"present.{i}.{kv}"] = {2: "P+S"}
    for i in range(L):
        for kv in ("key", "value"):
            names_out.append(f"new_key_values.{i}.{kv}")
            dyn[f"new_key_values.{i}.{kv}"] = {2: "S"}
    _torch_export(
        Decoder(lisa),
        [
            torch.randn(1, S, H, generator=g),
            torch.ones(1, P + S, dtype=torch.int64),
            torch.arange(P, P + S).unsqueeze(0),
            *past,
        ],
        dec_path,
        names_in,
        names_out,
        dyn,
    )
    externalize(dec_path, "decoder.onnx_data")


def export_graphs(
    lisa: Lisa,
    onnx_dir: Path,
    log=print,
    decoder: Callable[[Path], None] | None = None,
    release: bool = False,
    load_sam: Callable[[], None] | None = None,
    sam_encoder: Callable[[Path], None] | None = None,
) -> None:
    """``decoder(onnx_dir)``, when given, writes the decoder graph instead of the in-memory export (stream.py).
    ``release``: move each graph's weights to the meta device once it is written (the bounded-memory export: CLIP and
    the embedding table are not held while SAM ViT-H is traced).  ``load_sam()``, when given, fills in SAM's weights
    just before its graphs are exported (so ViT-H is not held while CLIP and the decoder are).  ``sam_encoder(path)``,
    when given, writes the SAM image encoder graph instead of one torch.onnx.export (stream.py, in parts)."""

    def done(*modules) -> None:
        if release:
            for m in modules:
                m.to("meta")
            gc.collect()

    onnx_dir.mkdir(parents=True, exist_ok=True)
    H = lisa.llm.config.hidden_size
    C = lisa.sam_dims.out_chans
    g = torch.Generator().manual_seed(0)

    log("export vision_encoder")
    _torch_export(
        VisionEncoder(lisa),
        [torch.randn(1, 3, 224, 224, generator=g)],
        onnx_dir / "vision_encoder.onnx",
        ["pixel_values"],
        ["image_features"],
        None,
    )
    external_if_large(onnx_dir / "vision_encoder.onnx")
    done(lisa.clip, lisa.mm_projector)
    log("export embed_tokens")
    _torch_export(
        EmbedTokens(lisa),
        [torch.tensor([[1, 2, 3]], dtype=torch.int64)],
        onnx_dir / "embed_tokens.onnx",
        ["input_ids"],
        ["inputs_embeds"],
        {"input_ids": {1: "S"}, "inputs_embeds": {1: "S"}},
    )
    external_if_large(onnx_dir / "embed_tokens.onnx")
    done(lisa.llm.model.embed_tokens)
    log("export decoder")
    if decoder is None:
        export_decoder(lisa, onnx_dir / "decoder.onnx", g)
    else:
        decoder(onnx_dir)
    gc.collect()
    log("export seg_projector")
    _torch_export(
        SegProjector(lisa),
        [torch.randn(2, H, generator=g)],
        onnx_dir / "seg_projector.onnx",
        ["seg_hidden"],
        ["seg_embeddings"],
        {"seg_hidden": {0: "N"}, "seg_embeddings": {0: "N"}},
    )
    done(lisa.text_hidden_fcs)
    if load_sam is not None:
        load_sam()
    log("export sam_image_encoder")
    enc_path = onnx_dir / "sam_image_encoder.onnx"
    if sam_encoder is not None:
        sam_encoder(enc_path)
    else:
        _torch_export(
            SamImageEncoder(lisa),
            [torch.randn(1, 3, 1024, 1024, generator=g)],
            enc_path,
            ["pixel_values"],
            ["image_embeddings"],
            None,
        )
        if enc_path.stat().st_size > (1 << 31) - (1 << 24) or any(
            p.name not in ("sam_image_encoder.onnx",) and p.name.startswith(("onnx__", "image_encoder"))
            for p in onnx_dir.iterdir()
        ):
            externalize(enc_path, "sam_image_encoder.onnx_data")
    done(lisa.image_encoder)
    log("export sam_mask_decoder")
    _torch_export(
        SamMaskDecoder(lisa),
        [
            torch.randn(1, C, 64, 64, generator=g),
            torch.randn(2, C, generator=g),
            torch.tensor([1024, 683]),
            torch.tensor([600, 400]),
        ],
        onnx_dir / "sam_mask_decoder.onnx",
        ["image_embeddings", "seg_embeddings", "resize_size", "orig_size"],
        ["masks", "iou_predictions", "low_res_masks"],
        {
            "seg_embeddings": {0: "N"},
            "masks": {0: "N", 2: "h", 3: "w"},
            "iou_predictions": {0: "N"},
            "low_res_masks": {0: "N"},
        },
    )
    log("export sam_prompt_decoder")
    export_prompt_decoder(
        lisa.prompt_encoder, lisa.mask_decoder, onnx_dir / "sam_prompt_decoder.onnx", set_shapes=False
    )
    for name, shapes in contract_shapes(lisa).items():
        set_io_shapes(onnx_dir / Path(GRAPH_FILES[name]).name, shapes)


def export_prompt_decoder(prompt_encoder, mask_decoder, path: Path, set_shapes: bool = True) -> None:
    """The sam_prompt_decoder graph (graphs.SamPromptDecoder): also used alone for the refine benchmark's
    ViT-H-sized decoder."""
    g = torch.Generator().manual_seed(1)
    C = mask_decoder.transformer_dim
    _torch_export(
        SamPromptDecoder(prompt_encoder, mask_decoder),
        [
            torch.randn(1, C, 64, 64, generator=g),
            torch.randn(2, C, generator=g),
            torch.rand(2, 3, 2, generator=g) * 400,
            torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
            torch.tensor([1024, 683]),
            torch.tensor([600, 400]),
        ],
        path,
        ["image_embeddings", "seg_embeddings", "point_coords", "point_labels", "resize_size", "orig_size"],
        ["iou_predictions", "low_res_masks"],
        {
            "seg_embeddings": {0: "N"},
            "point_coords": {0: "N", 1: "P"},
            "point_labels": {0: "N", 1: "P"},
            "iou_predictions": {0: "N"},
            "low_res_masks": {0: "N"},
        },
    )
    if set_shapes:
        set_io_shapes(path, prompt_decoder_shapes(C))


def _graph_tensors(m):
    yield from m.graph.initializer
    for node in m.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t


def quantize_language_model(onnx_dir: Path, weights: str, log=print) -> None:
    """Quantise the decoder's MatMuls (lm_head included); SAM, CLIP, the embedding table and the projector stay fp32.

    int8 / int4: weight-only MatMulNBits, block 32, symmetric, accuracy_level 4 (activations are quantised to int8 per
    block of 32 inside the kernel, which is what makes ONNX Runtime's CPU kernel fast: without it every decode step
    dequantises the weights to fp32 and the 1B bench ran 25 times slower per token).
    w8a8: int8 weights per output channel (symmetric) and int8 activations per tensor, quantised at run time by
    com.microsoft DynamicQuantizeMatMul; its integer GEMM uses VNNI/AMX where the CPU has them, so prefill, not only
    decoding, gets faster."""
    import logging

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime.quantization"):
        logging.getLogger(name).setLevel(logging.WARNING)  # it logs every node at INFO
    from onnx.external_data_helper import load_external_data_for_tensor

    path = onnx_dir / "decoder.onnx"
    # Stream: the graph is loaded without its data; MatMul weights stay in the fp32 file and are read one at a time,
    # so memory holds the quantised weights plus one fp32 tensor, not the whole fp32 decoder.
    fp32_data = onnx_dir / "decoder.onnx_data.fp32"
    os.replace(onnx_dir / "decoder.onnx_data", fp32_data)
    model = onnx.load(str(path), load_external_data=False)
    matmul_b = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    for t in _graph_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    e.value = fp32_data.name
            if t.name not in matmul_b:
                load_external_data_for_tensor(t, str(onnx_dir))
    if weights == "w8a8":
        qmodel = _dynamic_int8(model, onnx_dir)
        n = sum(1 for nd in qmodel.graph.node if nd.op_type == "DynamicQuantizeMatMul")
        what = "int8 weights per channel, int8 activations per tensor (DynamicQuantizeMatMul)"
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        bits = {"int8": 8, "int4": 4}[weights]
        q = MatMulNBitsQuantizer(model, bits=bits, block_size=32, is_symmetric=True, accuracy_level=4)
        with _quiet(), contextlib.chdir(onnx_dir):
            q.process()
        qmodel = q.model.model
        n = sum(1 for nd in qmodel.graph.node if nd.op_type == "MatMulNBits")
        what = f"{bits}-bit weights (MatMulNBits)"
    for t in _graph_tensors(qmodel):  # anything the quantiser skipped comes into memory before the fp32 file goes
        if t.data_location == onnx.TensorProto.EXTERNAL:
            load_external_data_for_tensor(t, str(onnx_dir))
    onnx.save_model(
        qmodel,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="decoder.onnx_data",
        size_threshold=0,
    )
    fp32_data.unlink()
    log(f"quantised {n} MatMuls of the decoder: {what}")


def w8a8_quantize(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fp32 [K, N] -> (int8 [K, N], fp32 scale [N]): symmetric, one scale per output column, |q| <= W8A8_WEIGHT_MAX."""
    scale = np.abs(arr).max(axis=0) / W8A8_WEIGHT_MAX
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(arr / scale), -W8A8_WEIGHT_MAX, W8A8_WEIGHT_MAX).astype(np.int8)
    return q, scale.astype(np.float32)


def _dynamic_int8(model, onnx_dir: Path):
    """MatMul(A, W) -> DynamicQuantizeMatMul(A, int8(W / s), s) with s = max|W[:, j]| / W8A8_WEIGHT_MAX per output
    column j."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    graph = model.graph
    nodes = []
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            nodes.append(node)
            continue
        q, scale = w8a8_quantize(numpy_helper.to_array(w, str(onnx_dir)).astype(np.float32))
        graph.initializer.remove(w)
        graph.initializer.extend(
            [numpy_helper.from_array(q, w.name + "_int8"), numpy_helper.from_array(scale, w.name + "_scale")]
        )
        nodes.append(
            onnx.helper.make_node(
                "DynamicQuantizeMatMul",
                [node.input[0], w.name + "_int8", w.name + "_scale"],
                list(node.output),
                name=node.name + "_w8a8",
                domain="com.microsoft",
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------------------------

GRAPH_FILES = {
    "vision_encoder": "onnx/vision_encoder.onnx",
    "embed_tokens": "onnx/embed_tokens.onnx",
    "decoder": "onnx/decoder.onnx",
    "seg_projector": "onnx/seg_projector.onnx",
    "sam_image_encoder": "onnx/sam_image_encoder.onnx",
    "sam_mask_decoder": "onnx/sam_mask_decoder.onnx",
    "sam_prompt_decoder": "onnx/sam_prompt_decoder.onnx",
}


def build_manifest(bundle: Path, lisa: Lisa, layout: str, tokens: dict, weights: str, source: dict) -> dict:
    cfg = lisa.llm.config
    H, L = cfg.hidden_size, cfg.num_hidden_layers
    D = getattr(cfg, "head_dim", None) or H // cfg.num_attention_heads
    graphs = {}
    for name, rel in GRAPH_FILES.items():
        ins, outs = _graph_io(bundle / rel)
        spec = {"file": rel, "inputs": ins, "outputs": outs, "weights": graph_weights(weights, name)}
        data = bundle / (rel + "_data")
        if data.exists():
            spec["external_data"] = [rel + "_data"]
        graphs[name] = spec
    files = {}
    for p in sorted(bundle.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(bundle).as_posix()
            files[rel] = file_entry(p)
    return {
        "format": "lisa-onnx/1",
        "variant": source.get("variant") or LAYOUT_VARIANT[layout],
        "layout": layout,
        "llm": {
            "hidden_size": H,
            "num_layers": L,
            "num_heads": cfg.num_attention_heads,
            "num_kv_heads": cfg.num_key_value_heads,
            "head_dim": D,
            "vocab_size": cfg.vocab_size,
            "max_positions": cfg.max_position_embeddings,
            "rms_norm_eps": cfg.rms_norm_eps,
            "weights": weights,
            "logits": "last",
        },
        "sam": {"prompt_dim": lisa.sam_dims.out_chans, "mask_index": 0, "threshold": 0.0},
        "tokens": tokens,
        "prompt": {
            "template": "llava_v1",
            "system": SYSTEM,
            "roles": ["USER", "ASSISTANT"],
            "sep": " ",
            "sep2": "</s>",
            "image_text": "<im_start><image><im_end>\n",
        },
        "generation": {"strategy": "greedy", "max_new_tokens": 512, "stop_ids": [2]},
        "clip_preprocess": {
            "shortest_edge": 224,
            "resample": "bicubic",
            "crop": [224, 224],
            "rescale": 1 / 255,
            "mean": CLIP_MEAN,
            "std": CLIP_STD,
        },
        "sam_preprocess": {
            "long_side": 1024,
            "resample": "bilinear",
            "mean": SAM_MEAN,
            "std": SAM_STD,
            "pad": "bottom-right-zero",
        },
        "graphs": graphs,
        "devices": DEVICES[weights],
        "files": files,
        "source": {
            "checkpoint": source.get("checkpoint", ""),
            "clip": source.get("clip", ""),
            "exporter": f"lisa_export {__version__}",
            "torch": torch.__version__.split("+")[0],
            "opset": OPSET,
        },
    }


def validate_manifest(manifest: dict) -> None:
    from .schema import validate

    schema = json.loads(SCHEMA_PATH.read_text())
    validate(manifest, schema)


README = """# {variant} ({weights}) - Reason Segment bundle

Format `lisa-onnx/1` (see docs/bundle-format.md in the Reason Segment repository). Exported by `{exporter}` from
`{checkpoint}` with CLIP from `{clip}`; layout `{layout}` ([SEG] = {seg}).

- LLM: hidden {H}, {L} layers, {nh} heads ({kv} key/value heads), vocab {V}; weights {weights}.
- SAM prompt dim {C}; masks are the logits of mask index 0 at the original image size, thresholded at 0.
- `lisa.manifest.json` lists every file with its sha256; the host refuses a bundle whose files do not match.

Open it in Reason Segment by pointing the model setting at this folder.
"""


def write_readme(bundle: Path, lisa: Lisa, layout: str, tokens: dict, weights: str, source: dict) -> None:
    cfg = lisa.llm.config
    (bundle / "README.md").write_text(
        README.format(
            variant=source.get("variant") or LAYOUT_VARIANT[layout],
            weights=weights,
            exporter=f"lisa_export {__version__}",
            checkpoint=source.get("checkpoint", ""),
            clip=source.get("clip", ""),
            layout=layout,
            seg=tokens["seg"],
            H=cfg.hidden_size,
            L=cfg.num_hidden_layers,
            nh=cfg.num_attention_heads,
            kv=cfg.num_key_value_heads,
            V=cfg.vocab_size,
            C=lisa.sam_dims.out_chans,
        )
    )


# ---------------------------------------------------------------------------------------------------------------------
# The whole export
# ---------------------------------------------------------------------------------------------------------------------


STREAM_ABOVE = 4 << 30  # bytes of fp32 language-model weights (LISA-7B: 27 GB); the 1B bench model (4.1 GB) is below


def llm_fp32_bytes(folder: Path) -> int:
    from .model import TensorSource

    src = TensorSource(folder)
    n = sum(int(np.prod(src.shape(k))) for k in src.keys() if k.startswith(("model.layers.", "lm_head.")))
    src.release()
    return 4 * n


def export_bundle(
    checkpoint: str | Path,
    clip: str | Path,
    out: str | Path,
    layout: str | None = None,
    weights: str = "float32",
    variant: str | None = None,
    force: bool = False,
    source_names: dict | None = None,
    extra: Callable[[Path, Lisa, object, str, dict], None] | None = None,
    log=print,
    stream: bool | None = None,
) -> Path:
    """Export; ``extra(tmp_bundle, lisa, tokenizer, layout, tokens)`` may add files (goldens) before the manifest.
    ``stream``: export the decoder layer by layer from the checkpoint (stream.py), so memory does not grow with the
    model; default: when the language model's fp32 weights pass STREAM_ABOVE bytes."""
    from .tokenizer import load_slow_tokenizer, write_tokenizer_json

    if weights not in WEIGHTS:
        raise ValueError(f"--weights must be one of {', '.join(WEIGHTS)}")
    out = Path(out).absolute()
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    folder = resolve_folder(checkpoint)
    if not (folder / "tokenizer.model").exists():
        raise CheckpointError(f"{folder}: missing tokenizer.model (LISA checkpoints ship their slow LLaMA tokenizer)")
    tokenizer = load_slow_tokenizer(folder)
    found = detect_layout(tokenizer)
    if layout is not None and layout != found:
        raise CheckpointError(
            f"--layout {layout} expects added tokens {LAYOUT_ADDED_TOKENS[layout]}; the "
            f"checkpoint's tokenizer has the {found} layout {LAYOUT_ADDED_TOKENS[found]}"
        )
    layout = found
    tokens = token_spec(tokenizer, layout)
    if stream is None:
        stream = llm_fp32_bytes(folder) > STREAM_ABOVE
    lisa, folder = load_lisa(
        folder, clip, layout=layout, tokenizer_len=len(tokenizer), llm_layers=not stream, sam=not stream
    )
    names = {"checkpoint": str(checkpoint), "clip": str(clip), "variant": variant}
    names.update(source_names or {})

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        decoder = sam = sam_encoder = None
        if stream:
            from .model import TensorSource, load_sam
            from .stream import (
                export_decoder_streaming,
                export_sam_encoder_streaming,
                load_module_weights,
                sam_encoder_parts,
            )

            def decoder(onnx_dir: Path) -> None:
                export_decoder_streaming(TensorSource(folder), lisa.llm.config, onnx_dir, weights, log=log)

            if len(sam_encoder_parts(lisa.image_encoder)) > 1:  # SAM ViT-H: its image encoder in parts
                sam_src = TensorSource(folder)

                def sam() -> None:
                    load_module_weights(lisa, sam_src, ("prompt_encoder.", "mask_decoder."))

                def sam_encoder(path: Path) -> None:
                    export_sam_encoder_streaming(
                        lisa.image_encoder, path, lambda p: load_module_weights(lisa, sam_src, p), log=log
                    )

            else:

                def sam() -> None:
                    load_sam(lisa, folder)

        export_graphs(
            lisa,
            tmp / "onnx",
            log=log,
            decoder=decoder,
            release=stream and extra is None,
            load_sam=sam,
            sam_encoder=sam_encoder,
        )
        if extra is None:
            # nothing needs the PyTorch LLM any more: give its weights back before the quantiser loads the graph
            lisa.llm.to("meta")
            gc.collect()
        if weights == "float16":
            for name, rel in GRAPH_FILES.items():
                if graph_weights(weights, name) == "float16" and not (stream and name == "decoder"):  # made fp16
                    to_float16(tmp / rel, log=log)
        elif weights != "float32" and not stream:
            quantize_language_model(tmp / "onnx", weights, log=log)
        (tmp / "tokenizer").mkdir()
        for f in TOKENIZER_FILES:
            if (folder / f).exists():
                shutil.copyfile(folder / f, tmp / "tokenizer" / f)
        write_tokenizer_json(folder, tmp / "tokenizer.json")
        write_readme(tmp, lisa, layout, tokens, weights, names)
        if extra is not None:
            extra(tmp, lisa, tokenizer, layout, tokens)
        manifest = build_manifest(tmp, lisa, layout, tokens, weights, names)
        validate_manifest(manifest)
        write_json(tmp / MANIFEST, manifest)
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}")
    return out
