"""The decoder graph in bounded memory: one layer from PyTorch, the rest stamped out in ONNX, weights streamed.

A full-size LLaMA in fp32 does not fit beside its own export on a 24 GB machine (LISA-7B: 27 GB of weights).  So:

1. A one-layer decoder at the checkpoint's real width is exported by the same code as the in-memory path
   (export.export_decoder over graphs.Decoder), with *marker* weights: seeded random values, different in every
   tensor, so each initializer of the exported graph can be traced back, by its bytes, to the parameter (and the
   transposition) it came from.  For w8a8/int8/int4 the template is quantised by the same quantiser as the in-memory
   path, so the node set is that path's; for float16 it is converted as export.to_float16 converts a whole graph.
2. The template's nodes are cut into prelude (rotary tables, attention mask), one layer, and postlude (final norm,
   lm_head); the layer is stamped out once per checkpoint layer with its names, past/present/new key-value names and
   weights renamed.
3. Every weight is read from the checkpoint one tensor at a time (safetensors or memory-mapped .bin shards, released
   after each layer), cast to fp32, transposed and quantised as the template says, and appended to
   ``decoder.onnx_data``.  Before anything is written, the template's own marker weights are put through the same
   transformation and must give the template's bytes exactly.

Peak memory is the template (one layer plus lm_head) and one tensor, whatever the depth.
"""

from __future__ import annotations

import gc
import hashlib
import re
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .model import TensorSource

INLINE_BELOW = 1024  # bytes: smaller tensors stay inside decoder.onnx, as export.externalize leaves them
LAYER_START = re.compile(r"(^|/)input_layernorm/")
POSTLUDE_START = re.compile(r"(^|/)norm/")
LAYER_KEY = re.compile(r"^model\.layers\.0\.")
QUANT_SUFFIXES = ("_Q4", "_Q8", "_scales", "_int8", "_scale")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def template_llm(cfg, seed: int = 0):
    """A one-layer LlamaForCausalLM at ``cfg``'s width (embed_tokens left on the meta device: the decoder graph does
    not use it) whose every parameter holds distinct seeded random values."""
    import copy

    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = copy.deepcopy(cfg)
    cfg.num_hidden_layers = 1
    cfg._attn_implementation = "eager"
    with torch.device("meta"):
        llm = LlamaForCausalLM(cfg)
    llm.model.layers.to_empty(device="cpu")
    llm.model.norm.to_empty(device="cpu")
    llm.lm_head.to_empty(device="cpu")
    llm.model.rotary_emb = LlamaRotaryEmbedding(config=cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in llm.parameters():
            if not p.is_meta:
                p.normal_(0.0, 0.02, generator=g)
    return llm.eval()


class Template:
    """The exported one-layer decoder, cut into prelude / layer / postlude, with its weights traced to checkpoint keys.

    ``weights[name] = (key, transposed, kind)``: initializer ``name`` holds checkpoint tensor ``key`` (``model.layers.0.``
    for the layer's own), transposed or not, as ``kind``: ``raw`` (fp32), or a quantiser's output (``_Q4``,
    ``_scales``, ``_int8``, ...)."""

    def __init__(self, model: onnx.ModelProto, sources: dict[str, tuple[str, bool]]):
        self.model = model
        g = model.graph
        nodes = list(g.node)
        first = next((i for i, n in enumerate(nodes) if LAYER_START.search(n.name)), None)
        post = next((i for i, n in enumerate(nodes) if POSTLUDE_START.search(n.name)), None)
        if first is None or post is None or post <= first:
            raise RuntimeError("stream: cannot find the layer in the one-layer decoder graph (node names changed?)")
        self.prelude, self.layer, self.postlude = nodes[:first], nodes[first:post], nodes[post:]
        self.weights: dict[str, tuple[str, bool, str]] = {}
        for t in g.initializer:
            if t.name in sources:
                self.weights[t.name] = (*sources[t.name], "raw")
                continue
            for suf in QUANT_SUFFIXES:
                base = t.name[: -len(suf)]
                if t.name.endswith(suf) and base in sources:
                    self.weights[t.name] = (*sources[base], suf)
                    break
        produced = {o for n in self.layer for o in n.output}
        for n in self.prelude:
            if set(n.input) & produced:
                raise RuntimeError(f"stream: prelude node {n.name} reads a value of the layer")
        outs = [o.name for o in g.output]
        self.layer_outputs = [o for o in outs if o in produced]
        for o in self.layer_outputs:
            if ".0." not in o:
                raise RuntimeError(f"stream: layer output {o} has no layer index")
        post_in = {i for n in self.postlude for i in n.input} & produced
        if len(post_in) != 1:
            raise RuntimeError(f"stream: the postlude reads {sorted(post_in)} of the layer; expected one hidden state")
        (self.h_out,) = post_in
        # inputs_embeds, or its cast to fp16 (a float16 template's first node, _place_io_casts)
        first_cast = nodes[0] if nodes[0].op_type == "Cast" and nodes[0].input[0] == g.input[0].name else None
        self.h_in = first_cast.output[0] if first_cast is not None else g.input[0].name
        self.produced = produced
        for n in self.layer:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
                raise RuntimeError(f"stream: layer node {n.name} has a subgraph")
        unmapped = [
            t.name for t in g.initializer if t.name not in self.weights and numpy_helper.to_array(t).nbytes >= (1 << 20)
        ]
        if unmapped:
            raise RuntimeError(f"stream: template initializers {unmapped[:3]} match no checkpoint tensor")


def trace_weights(model: onnx.ModelProto, llm) -> dict[str, tuple[str, bool]]:
    """Initializer name -> (checkpoint key, transposed), by the bytes of the marker weights."""
    by_digest: dict[str, tuple[str, bool]] = {}
    for name, p in llm.named_parameters():
        if p.is_meta:
            continue
        a = p.detach().numpy()
        by_digest[_digest(a)] = (name, False)
        if a.ndim == 2:
            by_digest[_digest(a.T)] = (name, True)
    out = {}
    for t in model.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) == 0:
            continue
        hit = by_digest.get(_digest(numpy_helper.to_array(t)))
        if hit is not None:
            out[t.name] = hit
    return out


class WeightMaker:
    """fp32 [K, N] weight -> the bytes of each initializer kind, by the quantiser the template was quantised with."""

    def __init__(self, weights: str, nbits_quantizer=None):
        self.weights = weights
        self.nbits = nbits_quantizer
        # The last weight quantised and its parts (a weight's kinds are asked for one after another). The weight itself
        # is kept, not its id(): once freed, a new array can take its id, and would get the old weight's bytes.
        self._last: tuple[np.ndarray, dict] | None = None

    def make(self, w: np.ndarray, kind: str) -> np.ndarray:
        if kind == "raw":
            if self.weights == "float16":
                from onnxruntime.transformers.float16 import convert_np_to_float16

                return convert_np_to_float16(w)  # what the template's conversion did to its marker weights
            return w
        cached = self._last[1] if self._last is not None and self._last[0] is w else None
        if cached is None:
            if kind in ("_int8", "_scale"):
                from .export import w8a8_quantize

                q, s = w8a8_quantize(w)
                cached = {"_int8": q, "_scale": s}
            else:
                packed, scales, _ = self.nbits.qbits_block_quant(w)
                cached = {"_Q4": packed, "_Q8": packed, "_scales": scales}
            self._last = (w, cached)
        return cached[kind]


def build_template(llm_cfg, work: Path, weights: str, log=print) -> tuple[Template, WeightMaker, object]:
    from .export import _dynamic_int8, _quiet, export_decoder

    llm = template_llm(llm_cfg)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "decoder.onnx"
    log(f"export decoder: one-layer template at hidden {llm_cfg.hidden_size}")
    export_decoder(types.SimpleNamespace(llm=llm), path, torch.Generator().manual_seed(0))
    model = onnx.load(str(path), load_external_data=True)
    sources = trace_weights(model, llm)
    nbits = None
    if weights == "w8a8":
        model = _dynamic_int8(model, work)
    elif weights in ("int8", "int4"):
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(
            model, bits={"int8": 8, "int4": 4}[weights], block_size=32, is_symmetric=True, accuracy_level=4
        )
        with _quiet():
            q.process()
        model, nbits = q.model.model, q.node_quantizer
    elif weights == "float16":
        from .precision import float16_model

        model = float16_model(model)
        _place_io_casts(model)
    tmpl = Template(model, sources)
    maker = WeightMaker(weights, nbits)
    # the transformation must reproduce the template's own bytes from its marker weights
    params = dict(llm.named_parameters())
    by_name = {t.name: t for t in model.graph.initializer}
    ws: dict[str, np.ndarray] = {}
    for name, (key, transposed, kind) in tmpl.weights.items():
        if key not in ws:
            a = params[key].detach().numpy()
            ws[key] = np.ascontiguousarray(a.T) if transposed else a
        got = maker.make(ws[key], kind)
        want = numpy_helper.to_array(by_name[name])
        if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
            raise RuntimeError(f"stream: {name} ({key}, {kind}) does not reproduce the template's bytes")
    del ws, params, llm
    for t in model.graph.initializer:  # the marker weights are not needed any more: the checkpoint's replace them
        if t.name in tmpl.weights:
            t.ClearField("raw_data")
    gc.collect()
    return tmpl, maker, model


def _place_io_casts(model: onnx.ModelProto) -> None:
    """convert_float_to_float16(keep_io_types=True) appends its casts of the graph's inputs and outputs at the end of
    the node list, and the template is cut by position: inputs_embeds' cast goes first (the prelude; the layer reads
    its output), every other input's cast just before its first reader (the past key/values': inside the layer, so
    they are stamped out per layer), every output's cast just after its writer."""
    g = model.graph
    is_io_cast = lambda n: n.op_type == "Cast" and n.name.startswith(("graph_input_cast", "graph_output_cast"))  # noqa: E731
    casts = [n for n in g.node if is_io_cast(n)]
    nodes = [n for n in g.node if not is_io_cast(n)]
    for c in casts:
        if c.name.startswith("graph_output_cast"):
            at = next(i for i, n in enumerate(nodes) if c.input[0] in n.output) + 1
        elif c.input[0] == g.input[0].name:
            at = 0
        else:
            at = next(i for i, n in enumerate(nodes) if c.output[0] in n.input)
        nodes.insert(at, c)
    del g.node[:]
    g.node.extend(nodes)


class DataWriter:
    """Appends tensors to one external data file, aligned as export.externalize aligns them."""

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "wb")
        self.offset = 0

    def put(self, t: onnx.TensorProto, arr: np.ndarray) -> None:
        raw = np.ascontiguousarray(arr)
        n = raw.nbytes
        del t.external_data[:]
        t.ClearField("raw_data")
        if n < INLINE_BELOW:
            t.data_location = onnx.TensorProto.DEFAULT
            t.raw_data = raw.tobytes()
            return
        align = 4096 if n >= 4096 else 64
        pad = (-self.offset) % align
        self.f.write(b"\0" * pad)
        self.offset += pad
        self.f.write(raw.data)  # the array's own buffer: no bytes copy of a 180 MB tensor
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", self.path.name), ("offset", str(self.offset)), ("length", str(n))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.offset += n

    def close(self) -> None:
        self.f.close()


def _renamer(i: int, tmpl: Template, prev_h: str) -> Callable[[str], str]:
    def rename(v: str) -> str:
        if v == tmpl.h_in:
            return prev_h
        if v in tmpl.layer_outputs:
            return v.replace(".0.", f".{i}.")
        if v.startswith("past_key_values.0."):
            return v.replace(".0.", f".{i}.")
        if v in tmpl.produced:
            return f"/layers.{i}{v}" if v.startswith("/") else f"/layers.{i}/{v}"
        return v

    return rename


def export_decoder_streaming(src: TensorSource, llm_cfg, onnx_dir: Path, weights: str = "float32", log=print) -> None:
    """Write ``onnx_dir/decoder.onnx`` + ``decoder.onnx_data`` for ``llm_cfg`` with the weights of ``src``."""
    L = llm_cfg.num_hidden_layers
    with tempfile.TemporaryDirectory(prefix="lisa-decoder-template-", dir=onnx_dir) as work:
        tmpl, maker, model = build_template(llm_cfg, Path(work), weights, log=log)
    g = model.graph
    weight_names = set(tmpl.weights)
    shared_inits = [t for t in g.initializer if t.name not in weight_names]
    layer_w = {n: w for n, w in tmpl.weights.items() if LAYER_KEY.match(w[0])}
    other_w = {n: w for n, w in tmpl.weights.items() if n not in layer_w}

    new = onnx.helper.make_graph([], g.name, [], [], [])
    writer = DataWriter(onnx_dir / "decoder.onnx_data")

    def stream(names: dict, i: int | None) -> list[onnx.TensorProto]:
        made = []
        cache: dict[str, np.ndarray] = {}
        for name, (key, transposed, kind) in names.items():
            real_key = key if i is None else LAYER_KEY.sub(f"model.layers.{i}.", key)
            if real_key not in cache:
                a = src.get(real_key).to(torch.float32).numpy()
                cache[real_key] = np.ascontiguousarray(a.T) if transposed else np.ascontiguousarray(a)
            arr = maker.make(cache[real_key], kind)
            t = onnx.TensorProto()
            t.name = real_key + ("" if kind == "raw" else kind) + (".T" if transposed and kind == "raw" else "")
            t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            t.dims.extend(arr.shape)
            writer.put(t, arr)
            made.append((name, t))
        src.release()
        return made

    try:
        new.node.extend(tmpl.prelude)
        prev_h = tmpl.h_in
        layer_outputs: list[list[str]] = []
        for i in range(L):
            made = stream(layer_w, i)
            local = {name: t.name for name, t in made}
            new.initializer.extend(t for _, t in made)
            rn = _renamer(i, tmpl, prev_h)
            for n in tmpl.layer:
                m = onnx.NodeProto()
                m.CopyFrom(n)
                m.name = f"/layers.{i}{n.name}" if n.name.startswith("/") else f"/layers.{i}/{n.name}"
                del m.input[:]
                m.input.extend(local.get(x, rn(x)) for x in n.input)
                del m.output[:]
                m.output.extend(rn(x) for x in n.output)
                new.node.append(m)
            for vi in g.value_info:
                if vi.name in tmpl.produced and vi.name not in tmpl.layer_outputs:
                    c = onnx.ValueInfoProto()
                    c.CopyFrom(vi)
                    c.name = rn(vi.name)
                    new.value_info.append(c)
            layer_outputs.append([rn(o) for o in tmpl.layer_outputs])
            prev_h = rn(tmpl.h_out)
            if (i + 1) % 8 == 0 or i + 1 == L:
                log(f"decoder: {i + 1}/{L} layers streamed ({writer.offset / 1e9:.2f} GB)")
        made = stream(other_w, None)
        renamed_inits = {name: t.name for name, t in made}
        new.initializer.extend(t for _, t in made)
        for n in tmpl.postlude:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            del m.input[:]
            m.input.extend(prev_h if x == tmpl.h_out else renamed_inits.get(x, x) for x in n.input)
            new.node.append(m)
        for t in shared_inits:
            c = onnx.TensorProto()
            c.CopyFrom(t)
            if c.data_location != onnx.TensorProto.EXTERNAL and len(c.raw_data) >= INLINE_BELOW:
                writer.put(c, numpy_helper.to_array(t))
            new.initializer.append(c)
    finally:
        writer.close()
    for vi in g.value_info:
        if vi.name not in tmpl.produced:
            new.value_info.append(vi)
    # inputs: the template's, with its one past pair stamped out per layer
    for vi in g.input:
        if vi.name.startswith("past_key_values.0."):
            continue
        new.input.append(vi)
    past = [vi for vi in g.input if vi.name.startswith("past_key_values.0.")]
    for i in range(L):
        for vi in past:
            c = onnx.ValueInfoProto()
            c.CopyFrom(vi)
            c.name = vi.name.replace(".0.", f".{i}.")
            new.input.append(c)
    # outputs: the non-layer ones, then each family (present, new_key_values) over all layers, as the in-memory export
    outs = {o.name: o for o in g.output}
    new.output.extend(o for o in g.output if o.name not in tmpl.layer_outputs)
    families: list[list[str]] = []
    for o in tmpl.layer_outputs:
        fam = o.split(".0.")[0]
        if not families or families[-1][0].split(".0.")[0] != fam:
            families.append([])
        families[-1].append(o)
    for fam in families:
        for i in range(L):
            for o in fam:
                c = onnx.ValueInfoProto()
                c.CopyFrom(outs[o])
                c.name = o.replace(".0.", f".{i}.")
                new.output.append(c)
    model.graph.CopyFrom(new)
    onnx.save_model(model, str(onnx_dir / "decoder.onnx"), save_as_external_data=False)
    log(f"decoder: {L} layers, {writer.offset / 1e9:.2f} GB of weights ({weights})")


# --- SAM's image encoder in parts ------------------------------------------------------------------------------------
# torch.onnx.export of SAM ViT-H (2.5 GB fp32) holds the module, the constant-folded (pre-transposed) copies of its
# Linear weights and the serialised model at once: 9.45 GB at the 7B shape.  Exported in parts of a few blocks, each
# part's weights are loaded from the checkpoint just before it is traced and given back after, and its graph is
# appended to one graph whose weights are streamed into the external data file: the same nodes, so the same numbers.

SAM_PART_BYTES = 640 << 20  # fp32 weight bytes of the blocks in one part (8 ViT-H blocks)


def sam_encoder_parts(enc, part_bytes: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) block ranges of the image encoder, each holding at most ``part_bytes`` of fp32 weights (at least one
    block); one range when the whole encoder fits in one part."""
    part_bytes = SAM_PART_BYTES if part_bytes is None else part_bytes
    depth = len(enc.blocks)
    if sum(p.numel() for p in enc.parameters()) * 4 <= part_bytes:
        return [(0, depth)]
    per_block = max(sum(p.numel() for p in b.parameters()) * 4 for b in enc.blocks)
    n = max(1, part_bytes // per_block)
    return [(lo, min(lo + n, depth)) for lo in range(0, depth, n)]


class EncoderPart(torch.nn.Module):
    """Blocks [lo, hi) of segment_anything's ImageEncoderViT, with the patch embedding before the first and the neck
    after the last: ImageEncoderViT.forward cut at block boundaries."""

    def __init__(self, enc, lo: int, hi: int):
        super().__init__()
        self.enc, self.lo, self.hi = enc, lo, hi

    def forward(self, x):
        enc = self.enc
        if self.lo == 0:
            x = enc.patch_embed(x)
            if enc.pos_embed is not None:
                x = x + enc.pos_embed
        for blk in enc.blocks[self.lo : self.hi]:
            x = blk(x)
        if self.hi == len(enc.blocks):
            x = enc.neck(x.permute(0, 3, 1, 2))
        return x


def load_module_weights(model, src: TensorSource, module_prefixes: tuple[str, ...]) -> None:
    """Fill in, from the checkpoint, the weights of ``model`` (a Lisa, or a module with its SAM attributes) whose
    module key starts with one of
    ``module_prefixes`` (SAM's, left on the meta device by load_lisa(sam=False))."""
    from .model import SAM_KEY_PREFIX, CheckpointError, Lisa

    keys = [
        k for k in src.keys() if k.startswith(SAM_KEY_PREFIX) and Lisa.lisa_to_module_key(k).startswith(module_prefixes)
    ]
    sd = {Lisa.lisa_to_module_key(k): t.float() for k, t in src.load_all(keys).items()}
    model.load_state_dict(sd, strict=False, assign=True)
    del sd
    src.release()
    left = [n for n, p in model.named_parameters() if p.is_meta and n.startswith(module_prefixes)]
    left += [n for n, b in model.named_buffers() if b.is_meta and n.startswith(module_prefixes)]
    if left:
        raise CheckpointError(f"internal: could not load SAM weights {left[:3]}")


def _block_prefixes(lo: int, hi: int, depth: int) -> tuple[str, ...]:
    mods = [f"image_encoder.blocks.{i}." for i in range(lo, hi)]
    if lo == 0:
        mods += ["image_encoder.patch_embed.", "image_encoder.pos_embed"]
    if hi == depth:
        mods += ["image_encoder.neck."]
    return tuple(mods)


def export_sam_encoder_streaming(
    enc, path: Path, load: Callable[[tuple[str, ...]], None], part_bytes: int | None = None, log=print
) -> None:
    """Write ``path`` (pixel_values -> image_embeddings) and ``path.name + '_data'`` part by part.  ``load(prefixes)``
    fills in the module weights under those prefixes (``image_encoder.blocks.3.``, ...) before a part is traced; the
    part's blocks go back to the meta device after."""
    from .export import _torch_export
    from .model import SAM_GRID

    parts = sam_encoder_parts(enc, part_bytes)
    depth = len(enc.blocks)
    width = enc.patch_embed.proj.out_channels
    g = torch.Generator().manual_seed(0)
    writer = DataWriter(path.parent / (path.name + "_data"))
    out = onnx.helper.make_graph([], "main_graph", [], [], [])
    first = None
    values: set[str] = set()  # value and initializer names taken by earlier parts
    node_names: set[str] = set()
    prev_out = None
    try:
        with tempfile.TemporaryDirectory(prefix="lisa-sam-parts-", dir=path.parent) as work:
            for k, (lo, hi) in enumerate(parts):
                load(_block_prefixes(lo, hi, depth))
                in_name = "pixel_values" if lo == 0 else f"hidden_{lo}"
                out_name = "image_embeddings" if hi == depth else f"hidden_{hi}"
                x = (
                    torch.randn(1, 3, 1024, 1024, generator=g)
                    if lo == 0
                    else torch.randn(1, SAM_GRID, SAM_GRID, width, generator=g)
                )
                part_path = Path(work) / f"part{k}.onnx"
                _torch_export(EncoderPart(enc, lo, hi), [x], part_path, [in_name], [out_name], None)
                del x
                for i in range(lo, hi):
                    enc.blocks[i].to("meta")
                gc.collect()
                m = onnx.load(str(part_path), load_external_data=True)
                for p in Path(work).iterdir():
                    p.unlink()
                if first is None:
                    first = m
                    out.input.extend(m.graph.input)
                taken = set(values)
                rename: dict[str, str] = {}
                for name in [t.name for t in m.graph.initializer] + [o for n in m.graph.node for o in n.output]:
                    if name == out_name:
                        continue
                    if name in taken:
                        rename[name] = f"{name}.part{k}"
                    values.add(rename.get(name, name))
                if prev_out is not None:
                    rename[in_name] = prev_out
                for t in m.graph.initializer:
                    t.name = rename.get(t.name, t.name)
                    writer.put(t, numpy_helper.to_array(t))
                    out.initializer.append(t)
                for n in m.graph.node:
                    for a in n.attribute:
                        if a.type == onnx.AttributeProto.TENSOR and len(a.t.raw_data) >= INLINE_BELOW:
                            writer.put(a.t, numpy_helper.to_array(a.t))
                    ins = [rename.get(i, i) for i in n.input]
                    outs = [rename.get(o, o) for o in n.output]
                    del n.input[:], n.output[:]
                    n.input.extend(ins)
                    n.output.extend(outs)
                    if n.name in node_names:
                        n.name = f"{n.name}.part{k}"
                    node_names.add(n.name)
                    out.node.append(n)
                for vi in m.graph.value_info:
                    vi.name = rename.get(vi.name, vi.name)
                    out.value_info.append(vi)
                if hi == depth:
                    out.output.extend(m.graph.output)
                prev_out = out_name
                log(f"sam_image_encoder: blocks {hi}/{depth} ({writer.offset / 1e9:.2f} GB)")
                del m
                gc.collect()
    finally:
        writer.close()
    model = onnx.helper.make_model(out, opset_imports=first.opset_import, ir_version=first.ir_version)
    model.producer_name, model.producer_version = first.producer_name, first.producer_version
    onnx.save_model(model, str(path), save_as_external_data=False)


def main(argv=None) -> int:
    """``python -m lisa_export.stream sam-encoder --checkpoint DIR --out DIR``: only the SAM image encoder graph of a
    checkpoint, as the streaming export writes it (or ``--whole``: one torch.onnx.export, as the in-memory export),
    with this process's peak RSS and the time: the export's SAM ViT-H phase measured alone."""
    import argparse
    import resource
    import time

    from .export import SamImageEncoder, _torch_export, externalize
    from .model import build_sam, infer_sam_dims

    ap = argparse.ArgumentParser(prog="python -m lisa_export.stream", description=main.__doc__.split("\n")[0])
    ap.add_argument("what", choices=["sam-encoder"])
    ap.add_argument("--checkpoint", required=True, type=Path, help="the LISA checkpoint folder")
    ap.add_argument("--out", required=True, type=Path, help="folder for sam_image_encoder.onnx (+ _data)")
    ap.add_argument("--whole", action="store_true", help="one torch.onnx.export of the whole encoder")
    a = ap.parse_args(argv)
    t0 = time.time()
    src = TensorSource(a.checkpoint)
    holder = torch.nn.Module()
    with torch.device("meta"):
        holder.image_encoder, _, _ = build_sam(infer_sam_dims(src))
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "sam_image_encoder.onnx"
    if a.whole:
        load_module_weights(holder, src, ("image_encoder.",))
        _torch_export(
            SamImageEncoder(holder),
            [torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))],
            path,
            ["pixel_values"],
            ["image_embeddings"],
            None,
        )
        externalize(path, path.name + "_data")
    else:
        export_sam_encoder_streaming(holder.image_encoder, path, lambda p: load_module_weights(holder, src, p))
    written = sum(p.stat().st_size for p in a.out.glob("sam_image_encoder.onnx*"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"sam-encoder: peak RSS {rss / 1e9:.2f} GB, {time.time() - t0:.0f} s, wrote {written / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
