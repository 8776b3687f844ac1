"""The bounded-memory decoder export (stream.py) against the in-memory export, on tiny shapes.

The streamed decoder is stamped out from a one-layer template, so its node names differ from the in-memory graph's,
and the in-memory graph folds identical weights (LLaMA's all-ones norms) into Identity nodes and shares the rotary
tables' Unsqueeze between layers; the streamed one does neither.  What must hold: the same outputs bit for bit on the
same machine (same weights, same kernels), the same weight bytes, and the other graphs byte for byte."""

from __future__ import annotations

import collections
import hashlib
import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import REPO, report, tiny_model
from safetensors.torch import load_file

EXPORT_DIR = REPO / "models" / "export"
OTHER_GRAPHS = (
    "vision_encoder",
    "embed_tokens",
    "seg_projector",
    "sam_image_encoder",
    "sam_mask_decoder",
    "sam_prompt_decoder",
)


def _export(ckpt, clip, out, weights, stream):
    from lisa_export.export import export_bundle

    return export_bundle(ckpt, clip, out, weights=weights, force=True, stream=stream, log=lambda m: None)


def _feeds(sess, rng):
    dims = {"S": 5, "P": 4, "P+S": 9}
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else dims[d] for d in i.shape]
        if i.name == "attention_mask":
            feeds[i.name] = np.ones(shape, np.int64)
            feeds[i.name][0, 2] = 0  # a masked key
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(4, 9, dtype=np.int64).reshape(1, 5)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _weight_digests(path):
    """Multiset of the decoder's initializer bytes (by content: names differ between the two paths)."""
    m = onnx.load(str(path))
    out = collections.Counter()
    for t in m.graph.initializer:
        out[hashlib.sha256(onnx.numpy_helper.to_array(t).tobytes()).hexdigest()] += 1
    return out


@pytest.mark.parametrize("weights", ["float32", "float16", "w8a8", "int4"])
def test_streamed_decoder_equals_in_memory(tmp_path, weights):
    _, _, _, ckpt, clip = tiny_model("7b", 1)
    a = _export(ckpt, clip, tmp_path / "memory", weights, stream=False)
    b = _export(ckpt, clip, tmp_path / "stream", weights, stream=True)
    for g in OTHER_GRAPHS:
        assert (a / "onnx" / f"{g}.onnx").read_bytes() == (b / "onnx" / f"{g}.onnx").read_bytes(), g
    sa = ort.InferenceSession(str(a / "onnx/decoder.onnx"), providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(str(b / "onnx/decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sa.get_inputs()] == [i.name for i in sb.get_inputs()]
    assert [o.name for o in sa.get_outputs()] == [o.name for o in sb.get_outputs()]
    feeds = _feeds(sa, np.random.default_rng(0))
    for x, y, o in zip(sa.run(None, feeds), sb.run(None, feeds), sa.get_outputs()):
        if weights == "float16":
            # ONNX Runtime's CPU runs an fp16 graph partly in fp32 (casts it inserts), and which cast pairs it drops
            # depends on the graph's layout: a streamed output may skip one rounding to fp16, never more
            ulp = np.spacing(np.abs(x).astype(np.float16)).astype(np.float32)
            assert (np.abs(x - y) <= ulp).all(), f"{o.name} differs by {np.abs(x - y).max()}"
        else:
            assert np.array_equal(x, y), f"{weights}: {o.name} differs by {np.abs(x - y).max()}"
    # the same weights: every tensor of the streamed graph is one of the in-memory graph's (which dedups equal ones)
    da, db = _weight_digests(a / "onnx/decoder.onnx"), _weight_digests(b / "onnx/decoder.onnx")
    assert set(db) == set(da)
    ma = json.loads((a / "lisa.manifest.json").read_text())
    mb = json.loads((b / "lisa.manifest.json").read_text())
    assert ma["graphs"]["decoder"]["inputs"] == mb["graphs"]["decoder"]["inputs"]
    assert ma["graphs"]["decoder"]["outputs"] == mb["graphs"]["decoder"]["outputs"]
    assert mb["llm"]["weights"] == weights


def test_stream_holds_one_part_at_a_time(tmp_path, monkeypatch):
    """The streaming export's memory high-water marks at the 7B shape were CLIP's export with SAM ViT-H resident
    (8.3 GB) and the decoder template beside SAM (8.7 GB): SAM's weights must not exist until its own graphs are
    exported, and CLIP's and the embedding table's must be gone by the time the decoder is."""
    from lisa_export import export

    _, _, _, ckpt, clip = tiny_model("7b", 1)
    real = export.export_graphs
    seen = {}

    def materialised(m) -> bool:
        return any(not p.is_meta for p in m.parameters())

    def spy(lisa, onnx_dir, log=print, decoder=None, release=False, load_sam=None, sam_encoder=None):
        def at_clip(msg):
            if msg == "export vision_encoder":
                seen["sam at clip"] = materialised(lisa.image_encoder)

        def dec(d):
            seen["at decoder"] = {
                n: materialised(m)
                for n, m in [("sam", lisa.image_encoder), ("clip", lisa.clip), ("embed", lisa.llm.model.embed_tokens)]
            }
            decoder(d)

        def sam():
            load_sam()
            seen["sam loaded"] = materialised(lisa.image_encoder)

        return real(lisa, onnx_dir, log=at_clip, decoder=dec, release=release, load_sam=sam, sam_encoder=sam_encoder)

    monkeypatch.setattr(export, "export_graphs", spy)
    export.export_bundle(ckpt, clip, tmp_path / "b", weights="w8a8", force=True, stream=True, log=lambda m: None)
    assert seen == {
        "sam at clip": False,
        "at decoder": {"sam": False, "clip": False, "embed": False},
        "sam loaded": True,
    }


def test_sam_encoder_in_parts_gives_the_same_numbers(tmp_path, monkeypatch):
    """SAM ViT-H's one torch.onnx.export was the 7B export's high-water mark (9.45 GB): the streaming export writes
    its image encoder in parts of a few blocks, each part's weights loaded just before it is traced.  Cut here into
    parts of one block: the graph must give the in-memory graph's numbers, with no part's blocks alive at another's
    export."""
    from lisa_export import stream

    _, _, _, ckpt, clip = tiny_model("7b", 1)
    a = _export(ckpt, clip, tmp_path / "memory", "float32", stream=False)
    real_load, real_parts = stream.load_module_weights, stream.sam_encoder_parts
    alive = []

    def load(model, src, prefixes):
        real_load(model, src, prefixes)
        if any(p.startswith("image_encoder.blocks.") for p in prefixes):
            alive.append(sum(any(not p.is_meta for p in b.parameters()) for b in model.image_encoder.blocks))

    def one_block(enc, part_bytes=None):
        return real_parts(enc, max(sum(p.numel() for p in b.parameters()) * 4 for b in enc.blocks))

    monkeypatch.setattr(stream, "load_module_weights", load)
    monkeypatch.setattr(stream, "sam_encoder_parts", one_block)
    b = _export(ckpt, clip, tmp_path / "stream", "float32", stream=True)
    assert len(alive) >= 2 and all(n == 1 for n in alive), alive
    for g in OTHER_GRAPHS:
        if g != "sam_image_encoder":
            assert (a / "onnx" / f"{g}.onnx").read_bytes() == (b / "onnx" / f"{g}.onnx").read_bytes(), g
    assert (b / "onnx" / "sam_image_encoder.onnx_data").exists()
    sa, sb = (
        ort.InferenceSession(str(x / "onnx/sam_image_encoder.onnx"), providers=["CPUExecutionProvider"]) for x in (a, b)
    )
    assert [(i.name, i.shape) for i in sa.get_inputs()] == [(i.name, i.shape) for i in sb.get_inputs()]
    assert [(o.name, o.shape) for o in sa.get_outputs()] == [(o.name, o.shape) for o in sb.get_outputs()]
    feeds = _feeds(sa, np.random.default_rng(0))
    (x,), (y,) = sa.run(None, feeds), sb.run(None, feeds)
    assert np.array_equal(x, y), f"sam_image_encoder differs by {np.abs(x - y).max()}"
    ma = json.loads((a / "lisa.manifest.json").read_text())
    mb = json.loads((b / "lisa.manifest.json").read_text())
    assert ma["graphs"]["sam_image_encoder"]["inputs"] == mb["graphs"]["sam_image_encoder"]["inputs"]
    assert ma["graphs"]["sam_image_encoder"]["outputs"] == mb["graphs"]["sam_image_encoder"]["outputs"]


def test_template_weights_are_traced_and_checked(tmp_path, monkeypatch):
    """Every weight of the one-layer template is traced to its checkpoint key; a transformation that does not give
    the template's own bytes back stops the export before anything is written."""
    from lisa_export.model import TensorSource, infer_llm_config
    from lisa_export.stream import WeightMaker, build_template

    _, _, _, ckpt, _ = tiny_model("7b", 1)
    cfg = infer_llm_config(TensorSource(ckpt), ckpt)
    tmpl, _, _ = build_template(cfg, tmp_path, "w8a8", log=lambda m: None)
    kinds = collections.Counter(k for _, _, k in tmpl.weights.values())
    assert kinds["_int8"] == kinds["_scale"] == 7 + 1  # q, k, v, o, gate, up, down; lm_head
    assert kinds["raw"] == 2 + 1  # the layer's two norms; the final norm
    assert {key for key, _, _ in tmpl.weights.values()} >= {"lm_head.weight", "model.norm.weight"}
    # a transformation one ulp off on one kind of tensor (the per-column scales) must be caught
    real = WeightMaker.make

    def off_by_an_ulp(self, w, kind):
        out = real(self, w, kind)
        return np.nextafter(out, np.float32(np.inf)) if kind == "_scale" else out

    monkeypatch.setattr(WeightMaker, "make", off_by_an_ulp)
    with pytest.raises(RuntimeError, match="does not reproduce"):
        build_template(cfg, tmp_path / "again", "w8a8", log=lambda m: None)


def test_bf16_bin_shards_stream_like_safetensors(tmp_path):
    """LISA's published checkpoints are bf16 .bin shards: read memory-mapped, they give the same bundle graphs as
    the same weights in safetensors (and the 4.31-era extra files and rotary_emb.inv_freq keys are ignored)."""
    _, _, _, ckpt, clip = tiny_model("13b", 2)
    sd = {k: v.to(torch.bfloat16) for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    keys = list(sd)
    folders = {}
    for fmt in ("bin", "safetensors"):
        src = tmp_path / fmt
        src.mkdir()
        for f in ckpt.iterdir():
            if f.suffix != ".safetensors":
                (src / f.name).write_bytes(f.read_bytes())
        (src / "generation_config.json").write_text('{"bos_token_id": 1, "transformers_version": "4.31.0"}')
        halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
        weight_map = {}
        for i, ks in enumerate(halves):
            part = {k: sd[k] for k in ks}
            if fmt == "bin":
                name = f"pytorch_model-0000{i + 1}-of-00002.bin"
                part["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(16)
                torch.save(part, src / name)
            else:
                from safetensors.torch import save_file

                name = f"model-0000{i + 1}-of-00002.safetensors"
                save_file(part, str(src / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in part})
        index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
        (src / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        folders[fmt] = src
    outs = {}
    for fmt, src in folders.items():
        out = tmp_path / f"bundle-{fmt}"
        r = subprocess.run(
            [
                str(EXPORT_DIR / "venv"),
                "run",
                "-m",
                "lisa_export",
                "export",
                "--checkpoint",
                str(src),
                "--clip",
                str(clip),
                "--out",
                str(out),
                "--layout",
                "13b",
                "--weights",
                "int4",
                "--stream",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,  # about 20 s on a quiet 2-core machine; over 300 s on this project's shared one
        )
        assert r.returncode == 0, r.stderr[-2000:]
        last = r.stdout.strip().splitlines()[-1]
        assert last.startswith("export: peak RSS ") and "wrote" in last, r.stdout
        report(f"streamed int4 tiny-13b from bf16 {fmt}: {last}")
        outs[fmt] = out
    for rel in ["onnx/decoder.onnx", "onnx/decoder.onnx_data", *[f"onnx/{g}.onnx" for g in OTHER_GRAPHS]]:
        assert (outs["bin"] / rel).read_bytes() == (outs["safetensors"] / rel).read_bytes(), rel


@pytest.mark.parametrize("where", ["folder", "config"])
def test_v0_checkpoint_is_refused_in_one_line(tmp_path, where):
    from lisa_export.export import export_bundle
    from lisa_export.model import CheckpointError

    _, _, _, ckpt, clip = tiny_model("13b", 2)
    src = tmp_path / ("LISA-13B-llama2-v0" if where == "folder" else "weights")
    src.mkdir()
    for f in ckpt.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    if where == "config":
        cfg = json.loads((src / "config.json").read_text())
        cfg["_name_or_path"] = "xinlai/LISA-7B-v0-explanatory"
        (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"is a LISA v0 checkpoint \(LISA-.*v0.*only v1 is supported") as e:
        export_bundle(src, clip, tmp_path / "out", log=lambda m: None)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_weight_maker_quantises_each_new_weight():
    """Layer after layer, a freed weight's id() is taken by the next one: the maker must still quantise the new one
    (it once kept the last weight's quantised bytes by id, and a layer could get the previous layer's weights)."""
    from lisa_export.export import w8a8_quantize
    from lisa_export.stream import WeightMaker

    maker = WeightMaker("w8a8")
    rng = np.random.default_rng(0)
    ids = set()
    for _ in range(20):
        w = rng.standard_normal((64, 32), dtype=np.float32)
        ids.add(id(w))
        got = maker.make(w, "_int8").tobytes(), maker.make(w, "_scale").tobytes()
        want_q, want_s = w8a8_quantize(w)
        assert got == (want_q.tobytes(), want_s.tobytes())
        del want_q, want_s
        del w  # freed last, so the next weight is likely to take its id
    assert len(ids) < 20, "no id was reused: the test did not meet the case it is for"
