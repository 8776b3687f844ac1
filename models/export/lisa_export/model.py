"""LISA rebuilt from real, maintained module classes, with LISA's own wiring and key names.

- the LLM is transformers' ``LlamaForCausalLM`` (checkpoint keys ``model.layers.*``, ``model.embed_tokens``,
  ``model.norm``, ``lm_head``);
- CLIP is transformers' ``CLIPVisionModel`` loaded from a separate folder, as LISA reloads
  ``openai/clip-vit-large-patch14`` at start-up (the merge script drops every ``vision_tower`` key);
- ``mm_projector`` is ``Linear(clip_hidden -> H)``, ``text_hidden_fcs`` is
  ``Sequential(Linear(H,H), ReLU, Linear(H,C), Dropout(0))`` under ``model.text_hidden_fcs.0.*``;
- SAM is the official ``segment_anything`` ImageEncoderViT / PromptEncoder / MaskDecoder(TwoWayTransformer) under
  ``model.visual_model.{image_encoder,prompt_encoder,mask_decoder}.*``.

Every dimension is inferred from the checkpoint (config.json + tensor shapes); every key is checked against the
rebuilt module before anything is loaded, and a mismatch raises ``CheckpointError`` naming the key and what was
expected.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

# segment_anything/__init__.py imports the automatic mask generator, which imports torchvision.  torchvision is
# deliberately not installed (a PyPI torchvision does not import beside the pinned CPU torch), and LISA needs only the
# model classes.  Register an empty package object with the real search path so that
# ``segment_anything.modeling`` imports without running the package __init__.
_spec = importlib.util.find_spec("segment_anything")
if _spec is None:  # pragma: no cover - the lock pins segment-anything
    raise ImportError("segment-anything is not installed in the exporter venv")
if "segment_anything" not in sys.modules:
    _pkg = types.ModuleType("segment_anything")
    _pkg.__path__ = list(_spec.submodule_search_locations)
    sys.modules["segment_anything"] = _pkg
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer  # noqa: E402
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

SAM_IMG_SIZE = 1024
SAM_PATCH = 16
SAM_GRID = SAM_IMG_SIZE // SAM_PATCH  # 64
SAM_DECODER_HEADS = 8  # build_sam.py: TwoWayTransformer(num_heads=8); not recoverable from tensor shapes

LAYOUT_ADDED_TOKENS = {
    "7b": ["<im_patch>", "<im_start>", "<im_end>", "[SEG]"],
    "13b": ["[SEG]", "<im_start>", "<im_end>"],
}
LAYOUT_VARIANT = {"7b": "LISA-7B-v1", "13b": "LISA-13B-llama2-v1"}

# Keys a real checkpoint may carry that the rebuilt model does not need.
IGNORED_KEY_PATTERNS = ("rotary_emb.inv_freq", "model.vision_tower.", "vision_tower.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be LISA: the message names the key and what was expected."""


class HubUnreachable(RuntimeError):
    pass


HUB_MESSAGE = "cannot reach the Hugging Face hub; pass a local folder"


@dataclass
class SamDims:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    out_chans: int
    window_size: int
    global_attn_indexes: list[int]
    qkv_bias: bool
    use_abs_pos: bool
    use_rel_pos: bool
    mask_in_chans: int
    dec_depth: int
    dec_mlp_dim: int
    dec_heads: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int


@dataclass
class LisaDims:
    llm: dict
    clip: dict
    sam: SamDims
    prompt_dim: int = 256
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"llm": self.llm, "clip": self.clip, "sam": asdict(self.sam), "prompt_dim": self.prompt_dim}


def build_sam(d: SamDims) -> tuple[ImageEncoderViT, PromptEncoder, MaskDecoder]:
    """Same construction as segment_anything.build_sam._build_sam, with the dims as parameters."""
    from functools import partial

    enc = ImageEncoderViT(
        depth=d.depth,
        embed_dim=d.embed_dim,
        img_size=SAM_IMG_SIZE,
        mlp_ratio=d.mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=d.num_heads,
        patch_size=SAM_PATCH,
        qkv_bias=d.qkv_bias,
        use_rel_pos=d.use_rel_pos,
        use_abs_pos=d.use_abs_pos,
        global_attn_indexes=tuple(d.global_attn_indexes),
        window_size=d.window_size,
        out_chans=d.out_chans,
    )
    pe = PromptEncoder(
        embed_dim=d.out_chans,
        image_embedding_size=(SAM_GRID, SAM_GRID),
        input_image_size=(SAM_IMG_SIZE, SAM_IMG_SIZE),
        mask_in_chans=d.mask_in_chans,
    )
    md = MaskDecoder(
        num_multimask_outputs=d.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=d.dec_depth, embedding_dim=d.out_chans, mlp_dim=d.dec_mlp_dim, num_heads=d.dec_heads
        ),
        transformer_dim=d.out_chans,
        iou_head_depth=d.iou_head_depth,
        iou_head_hidden_dim=d.iou_head_hidden_dim,
    )
    return enc, pe, md


class Lisa(nn.Module):
    """The rebuilt LISA.  ``state_dict_lisa()`` gives LISA's checkpoint key names."""

    def __init__(
        self,
        llm_config: LlamaConfig,
        clip_config: CLIPVisionConfig,
        sam: SamDims,
        meta_llm: bool = False,
        meta_sam: bool = False,
    ):
        super().__init__()
        llm_config._attn_implementation = "eager"
        clip_config._attn_implementation = "eager"
        if meta_llm:
            with torch.device("meta"):
                self.llm = LlamaForCausalLM(llm_config)
        else:
            self.llm = LlamaForCausalLM(llm_config)
        self.llm.eval()
        self.clip = CLIPVisionModel(clip_config).eval()
        H = llm_config.hidden_size
        C = sam.out_chans
        self.mm_projector = nn.Linear(clip_config.hidden_size, H)
        self.text_hidden_fcs = nn.ModuleList(
            [nn.Sequential(nn.Linear(H, H), nn.ReLU(inplace=True), nn.Linear(H, C), nn.Dropout(0.0))]
        )
        with torch.device("meta") if meta_sam else contextlib.nullcontext():
            self.image_encoder, self.prompt_encoder, self.mask_decoder = build_sam(sam)
        self.sam_dims = sam
        self.eval()

    # --- LISA key names -------------------------------------------------------------------------------------------
    PREFIXES = (
        ("model.mm_projector.", "mm_projector."),
        ("model.text_hidden_fcs.", "text_hidden_fcs."),
        ("model.visual_model.image_encoder.", "image_encoder."),
        ("model.visual_model.prompt_encoder.", "prompt_encoder."),
        ("model.visual_model.mask_decoder.", "mask_decoder."),
        ("model.", "llm.model."),
        ("lm_head.", "llm.lm_head."),
    )

    @classmethod
    def lisa_to_module_key(cls, key: str) -> str | None:
        for lisa, mod in cls.PREFIXES:
            if key.startswith(lisa):
                return mod + key[len(lisa) :]
        return None

    @classmethod
    def module_to_lisa_key(cls, key: str) -> str | None:
        for lisa, mod in cls.PREFIXES:
            if key.startswith(mod):
                return lisa + key[len(mod) :]
        return None

    def lisa_expected_shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for k, v in self.state_dict(keep_vars=True).items():
            if k.startswith("clip."):
                continue
            lk = self.module_to_lisa_key(k)
            if lk is not None:
                out[lk] = tuple(v.shape)
        return out

    def state_dict_lisa(self) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in self.state_dict().items():
            if k.startswith("clip."):
                continue
            out[self.module_to_lisa_key(k)] = v
        return out

    # --- the pieces LISA calls --------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.llm.config.hidden_size

    def clip_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP hidden_states[-2], CLS dropped, mm_projector: [1,256,H] (LISA clip_encoder.py + llava_arch.py)."""
        out = self.clip(pixel_values, output_hidden_states=True)
        feats = out.hidden_states[-2][:, 1:]
        return self.mm_projector(feats)

    def seg_project(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        return self.text_hidden_fcs[0](seg_hidden)

    def sam_masks(
        self,
        image_embeddings: torch.Tensor,
        seg_embeddings: torch.Tensor,
        resize_size: tuple[int, int],
        orig_size: tuple[int, int],
    ):
        """LISA model/LISA.py evaluate: prompt encoder with text_embeds only, mask decoder multimask False,
        sam.postprocess_masks.  Returns (masks [N,1,h,w] logits, iou [N,1], low_res [N,1,256,256])."""
        # LISA's PromptEncoder fork takes text_embeds: sparse = text_embeds[:, None] (no PE, no pad point), dense =
        # no_mask_embed broadcast.  The official PromptEncoder has no such argument, so the two are built here.
        n = seg_embeddings.shape[0]
        sparse = seg_embeddings[:, None, :]
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, SAM_GRID, SAM_GRID)
        low_res, iou = self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        masks = postprocess_masks(low_res, resize_size, orig_size)
        return masks, iou, low_res


def postprocess_masks(low_res: torch.Tensor, resize_size, orig_size) -> torch.Tensor:
    """LISA model/segment_anything/modeling/sam.py postprocess_masks (works on ints or 0-d int64 tensors)."""
    masks = torch.nn.functional.interpolate(
        low_res.float(), (SAM_IMG_SIZE, SAM_IMG_SIZE), mode="bilinear", align_corners=False
    )
    masks = masks[..., : resize_size[0], : resize_size[1]]
    return torch.nn.functional.interpolate(masks, (orig_size[0], orig_size[1]), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def resolve_folder(path_or_id: str | Path) -> Path:
    """A local folder, or a hub id (which needs the hub: say so in one line when it cannot be reached)."""
    p = Path(path_or_id)
    if p.is_dir():
        return p
    s = str(path_or_id)
    if p.exists():
        raise CheckpointError(f"{s}: not a folder; pass the checkpoint folder")
    looks_like_id = s.count("/") == 1 and not s.startswith((".", "/", "~"))
    if not looks_like_id:
        raise CheckpointError(f"{s}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                s, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model", "*.txt"], etag_timeout=5
            )
        )
    except Exception as e:  # connection errors come in many classes (requests, httpx, hub's own)
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(e, RepositoryNotFoundError) and "offline" not in str(e).lower() and _hub_reachable():
            raise CheckpointError(f"{s}: no such repository on the Hugging Face hub") from None
        raise HubUnreachable(HUB_MESSAGE) from None


def _hub_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


class TensorSource:
    """Lazy access to a checkpoint's tensors: safetensors are opened memory-mapped, .bin with torch.load(mmap)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._where: dict[str, Path] = {}
        self._bin_cache: dict[Path, dict] = {}
        files: list[Path] = []
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            idx = folder / index_name
            if idx.exists():
                wm = json.loads(idx.read_text())["weight_map"]
                for k, f in wm.items():
                    self._where[k] = folder / f
                break
        if not self._where:
            files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
            files = [f for f in files if not f.name.startswith("training_args")]
            if not files:
                raise CheckpointError(f"{folder}: no *.safetensors or *.bin weights (nor an index json)")
            for f in files:
                for k in self._keys_of(f):
                    self._where[k] = f

    def _keys_of(self, f: Path) -> list[str]:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), "pt") as h:
                return list(h.keys())
        return list(self._load_bin(f).keys())

    def _load_bin(self, f: Path) -> dict:
        if f not in self._bin_cache:
            self._bin_cache[f] = torch.load(str(f), map_location="cpu", mmap=True, weights_only=True)
        return self._bin_cache[f]

    def keys(self) -> list[str]:
        return list(self._where)

    def release(self) -> None:
        """Unmap the .bin shards read so far (their touched pages count as this process's memory while mapped)."""
        self._bin_cache.clear()

    def shape(self, key: str) -> tuple[int, ...]:
        f = self._where[key]
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), "pt") as h:
                return tuple(h.get_slice(key).get_shape())
        return tuple(self._load_bin(f)[key].shape)

    def get(self, key: str) -> torch.Tensor:
        f = self._where[key]
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), "pt") as h:
                return h.get_tensor(key)
        return self._load_bin(f)[key]

    def load_all(self, keys) -> dict[str, torch.Tensor]:
        """All wanted tensors, file by file.  safetensors.torch.load_file would copy; safe_open+get_tensor
        materialises one tensor at a time, and the caller assigns them into the module (no second copy)."""
        by_file: dict[Path, list[str]] = {}
        for k in keys:
            by_file.setdefault(self._where[k], []).append(k)
        out = {}
        for f, ks in by_file.items():
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), "pt") as h:
                    for k in ks:
                        out[k] = h.get_tensor(k)
            else:
                sd = self._load_bin(f)
                for k in ks:
                    out[k] = sd[k]
        return out


def _count_indexed(keys, prefix: str) -> int:
    idx = set()
    for k in keys:
        if k.startswith(prefix):
            rest = k[len(prefix) :]
            head = rest.split(".", 1)[0]
            if head.isdigit():
                idx.add(int(head))
    return (max(idx) + 1) if idx else 0


def _need(src: TensorSource, key: str, what: str) -> tuple[int, ...]:
    if key not in src._where:
        raise CheckpointError(f"missing key {key} (expected: {what})")
    return src.shape(key)


def infer_sam_dims(src: TensorSource) -> SamDims:
    keys = src.keys()
    p = "model.visual_model.image_encoder."
    pw = _need(src, p + "patch_embed.proj.weight", f"a SAM patch embedding [E,3,{SAM_PATCH},{SAM_PATCH}]")
    if tuple(pw[1:]) != (3, SAM_PATCH, SAM_PATCH):
        raise CheckpointError(f"{p}patch_embed.proj.weight has shape {list(pw)}; expected [E,3,16,16]")
    E = pw[0]
    depth = _count_indexed(keys, p + "blocks.")
    if depth == 0:
        raise CheckpointError(f"missing key {p}blocks.0.attn.qkv.weight (expected: SAM ViT blocks)")
    use_rel = (p + "blocks.0.attn.rel_pos_h") in src._where
    global_idx, window = [], 14
    heads = 16 if E == 1280 else (12 if E == 768 else (16 if E == 1024 else max(1, E // 16)))
    if use_rel:
        for i in range(depth):
            n, hd = _need(src, f"{p}blocks.{i}.attn.rel_pos_h", "relative position table [2*size-1, head_dim]")
            size = (n + 1) // 2
            if size == SAM_GRID:
                global_idx.append(i)
            else:
                window = size
            heads = E // hd
    mlp_hidden = _need(src, p + "blocks.0.mlp.lin1.weight", "SAM MLP [E*ratio, E]")[0]
    neck = _need(src, p + "neck.0.weight", "SAM neck conv [C,E,1,1]")
    C = neck[0]
    pe = "model.visual_model.prompt_encoder."
    mic = _need(src, pe + "mask_downscaling.3.weight", "[mask_in_chans, mask_in_chans//4, 2, 2]")[0]
    md = "model.visual_model.mask_decoder."
    dec_depth = _count_indexed(keys, md + "transformer.layers.")
    mlp_dim = _need(src, md + "transformer.layers.0.mlp.lin1.weight", "[mlp_dim, C]")[0]
    ntok = _need(src, md + "mask_tokens.weight", "[num_multimask_outputs+1, C]")[0]
    iou_depth = _count_indexed(keys, md + "iou_prediction_head.layers.")
    iou_hidden = _need(src, md + "iou_prediction_head.layers.0.weight", "[iou_hidden, C]")[0]
    return SamDims(
        embed_dim=E,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_hidden / E,
        out_chans=C,
        window_size=window,
        global_attn_indexes=global_idx,
        qkv_bias=(p + "blocks.0.attn.qkv.bias") in src._where,
        use_abs_pos=(p + "pos_embed") in src._where,
        use_rel_pos=use_rel,
        mask_in_chans=mic,
        dec_depth=dec_depth,
        dec_mlp_dim=mlp_dim,
        dec_heads=SAM_DECODER_HEADS,
        num_multimask_outputs=ntok - 1,
        iou_head_depth=iou_depth,
        iou_head_hidden_dim=iou_hidden,
    )


def infer_llm_config(src: TensorSource, folder: Path) -> LlamaConfig:
    cfg_path = folder / "config.json"
    raw = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    V, H = _need(src, "model.embed_tokens.weight", "the LLaMA token embedding [vocab, hidden]")
    layers = _count_indexed(src.keys(), "model.layers.")
    if layers == 0:
        raise CheckpointError("missing key model.layers.0.self_attn.q_proj.weight (expected: LLaMA decoder layers)")
    inter = _need(src, "model.layers.0.mlp.gate_proj.weight", f"[intermediate, {H}]")[0]
    heads = raw.get("num_attention_heads")
    if heads is None:
        heads = H // 128 if H % 128 == 0 else 1
    q = _need(src, "model.layers.0.self_attn.q_proj.weight", f"[{H}, {H}]")
    k = _need(src, "model.layers.0.self_attn.k_proj.weight", f"[kv_heads*head_dim, {H}]")
    head_dim = q[0] // heads
    kv_heads = raw.get("num_key_value_heads") or (k[0] // head_dim)
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=H,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        max_position_embeddings=raw.get("max_position_embeddings", 2048),
        rope_theta=raw.get("rope_theta", 10000.0),
        rope_scaling=raw.get("rope_scaling"),
        hidden_act=raw.get("hidden_act", "silu"),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        attention_bias=raw.get("attention_bias", False),
        mlp_bias=raw.get("mlp_bias", False),
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=True,
    )
    return cfg


def load_clip(clip_folder: str | Path) -> CLIPVisionModel:
    folder = resolve_folder(clip_folder)
    cfgp = folder / "config.json"
    if not cfgp.exists():
        raise CheckpointError(f"{folder}: missing config.json (expected a CLIP ViT checkpoint folder)")
    raw = json.loads(cfgp.read_text())
    vc = raw.get("vision_config", raw) if raw.get("model_type") == "clip" else raw
    vc = {k: v for k, v in vc.items() if k not in ("model_type", "architectures", "transformers_version")}
    cfg = CLIPVisionConfig(**vc)
    cfg._attn_implementation = "eager"
    model = CLIPVisionModel(cfg).eval()
    src = TensorSource(folder)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: k for k in src.keys() if k.startswith("vision_model.")}
    for k, shp in expected.items():
        if k not in have:
            if k.endswith("position_ids"):
                continue
            raise CheckpointError(f"CLIP: missing key {k} (expected shape {list(shp)})")
        s = src.shape(k)
        if tuple(s) != shp:
            raise CheckpointError(f"CLIP: key {k} has shape {list(s)}; expected {list(shp)}")
    sd = src.load_all([k for k in expected if k in have])
    sd = {k: v.float() for k, v in sd.items()}
    model.load_state_dict(sd, strict=False, assign=True)
    return model.eval()


V0_NAME = re.compile(r"LISA-[0-9]+B(-llama2)?-v0(\b|-|$)", re.IGNORECASE)


def refuse_v0(folder: Path, given: str) -> None:
    """LISA's v0 releases (LISA-7B-v0, LISA-13B-llama2-v0, ...) need LISA's legacy code (commit 0e26916); chat.py does
    not run them, and neither does this exporter.  They are told apart by name: the folder or hub id, or the
    _name_or_path transformers wrote into config.json."""
    cfg = folder / "config.json"
    names = [given, folder.name]
    if cfg.exists():
        names.append(str(json.loads(cfg.read_text()).get("_name_or_path", "")))
    for n in names:
        m = V0_NAME.search(n)
        if m:
            raise CheckpointError(
                f"{given} is a LISA v0 checkpoint ({m.group(0)}); only v1 is supported (LISA's chat.py does not run v0 "
                "either): export LISA-7B-v1 or LISA-13B-llama2-v1, or their -explanatory versions"
            )


def load_lisa(
    checkpoint: str | Path,
    clip: str | Path,
    layout: str | None = None,
    tokenizer_len: int | None = None,
    llm_layers: bool = True,
    sam: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[Lisa, Path]:
    """Read a LISA checkpoint folder (or hub id) and the CLIP folder; validate; return the model and the folder.
    ``llm_layers=False`` checks every key but loads only the LLM's embedding table: the decoder layers, final norm and
    lm_head stay on the meta device (stream.py exports them from the checkpoint directly).  ``sam=False`` leaves SAM
    on the meta device too, for load_sam to fill in when its graphs are exported (ViT-H is 2.5 GB in fp32).
    ``dtype=torch.bfloat16`` keeps a bf16 checkpoint's tensors as they are, as LISA's chat.py ``--precision bf16``
    runs it (the benchmark's reference at real size; exported graphs are always made from fp32)."""
    folder = resolve_folder(checkpoint)
    refuse_v0(folder, str(checkpoint))
    src = TensorSource(folder)
    llm_cfg = infer_llm_config(src, folder)
    if layout is not None and tokenizer_len is not None and llm_cfg.vocab_size != tokenizer_len:
        n_added = len(LAYOUT_ADDED_TOKENS[layout])
        raise CheckpointError(
            f"model.embed_tokens.weight has {llm_cfg.vocab_size} rows; layout {layout} expects {tokenizer_len} "
            f"(the tokenizer's {tokenizer_len - n_added} pieces + {n_added} added tokens "
            f"{','.join(LAYOUT_ADDED_TOKENS[layout])})"
        )
    sam_dims = infer_sam_dims(src)
    clip_model = load_clip(clip)
    if "model.mm_projector.weight" not in src._where:
        raise CheckpointError(
            f"missing key model.mm_projector.weight (expected shape "
            f"[{llm_cfg.hidden_size}, {clip_model.config.hidden_size}])"
        )
    model = Lisa(llm_cfg, clip_model.config, sam_dims, meta_llm=True, meta_sam=not sam)
    model.clip = clip_model
    expected = model.lisa_expected_shapes()
    for k, shp in expected.items():
        if k not in src._where:
            raise CheckpointError(f"missing key {k} (expected shape {list(shp)})")
        s = tuple(src.shape(k))
        if s != shp:
            raise CheckpointError(f"key {k} has shape {list(s)}; expected {list(shp)}")
    unexpected = [k for k in src.keys() if k not in expected and not any(p in k for p in IGNORED_KEY_PATTERNS)]
    if unexpected:
        raise CheckpointError(f"unexpected key {unexpected[0]} ({len(unexpected)} in all) in {folder}")
    wanted = [
        k
        for k in expected
        if (llm_layers or k == "model.embed_tokens.weight" or not Lisa.lisa_to_module_key(k).startswith("llm."))
        and (sam or not k.startswith(SAM_KEY_PREFIX))
    ]
    tensors = src.load_all(wanted)
    module_sd = {}
    for k, t in tensors.items():
        if t.dtype != dtype:
            t = t.to(dtype)  # fp16/bf16 checkpoints: exported graphs are fp32
        module_sd[Lisa.lisa_to_module_key(k)] = t
    del tensors
    missing, unexp = model.load_state_dict(module_sd, strict=False, assign=True)
    missing = [
        m
        for m in missing
        if not m.startswith("clip.")
        and (llm_layers or not m.startswith("llm."))
        and (sam or not m.startswith(SAM_MODULES))
    ]
    if missing or unexp:
        raise CheckpointError(f"internal: could not assign {missing[:3]} {unexp[:3]}")
    del module_sd
    src.release()
    # non-persistent buffers were created on the meta device: rebuild them on the CPU
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    model.llm.model.rotary_emb = LlamaRotaryEmbedding(config=llm_cfg)
    if llm_cfg.tie_word_embeddings:
        model.llm.tie_weights()
    if dtype != torch.float32:
        model.to(dtype)  # CLIP and the rebuilt buffers
    for n, b in model.named_buffers():
        if b.is_meta and (sam or not n.startswith(SAM_MODULES)):
            raise CheckpointError(f"internal: buffer {n} left uninitialised")
    return model.eval(), folder


SAM_KEY_PREFIX = "model.visual_model."
SAM_MODULES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def load_sam(model: Lisa, folder: Path) -> None:
    """Fill in the SAM weights that load_lisa(sam=False) left on the meta device."""
    src = TensorSource(folder)
    keys = [k for k in model.lisa_expected_shapes() if k.startswith(SAM_KEY_PREFIX)]
    sd = {Lisa.lisa_to_module_key(k): t.float() for k, t in src.load_all(keys).items()}
    missing, _ = model.load_state_dict(sd, strict=False, assign=True)
    del sd
    src.release()
    left = [m for m in missing if m.startswith(SAM_MODULES)]
    left += [n for n, b in model.named_buffers() if b.is_meta and n.startswith(SAM_MODULES)]
    if left:
        raise CheckpointError(f"internal: could not load SAM weights {left[:3]}")
