"""Run a bundle with ONNX Runtime (Python), the way the TypeScript host does: the check that the bundle alone, with
its manifest, reproduces the PyTorch reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .reference import (
    IMAGE_TOKEN_INDEX,
    NUM_IMAGE_TOKENS,
    build_prompt,
    clean_text,
    clip_preprocess,
    expanded_index,
    load_image,
    rle_of,
    sam_preprocess,
    seg_positions_of,
)


class OrtBundle:
    def __init__(self, folder: str | Path, threads: int = 2):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "lisa.manifest.json").read_text())
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sessions = {}
        for name, spec in self.manifest["graphs"].items():
            self.sessions[name] = ort.InferenceSession(
                str(self.folder / spec["file"]), so, providers=["CPUExecutionProvider"]
            )

    def run(self, graph: str, **inputs):
        s = self.sessions[graph]
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(None, inputs)))

    def empty_past(self) -> dict:
        llm = self.manifest["llm"]
        z = np.zeros((1, llm["num_kv_heads"], 0, llm["head_dim"]), np.float32)
        return {f"past_key_values.{i}.{kv}": z for i in range(llm["num_layers"]) for kv in ("key", "value")}

    def generate(self, input_ids: list[int], clip_pv: np.ndarray, max_new_tokens: int):
        """The host's loop: embed ids (placeholder -> 0), splice image features, prefill, greedy with KV cache; keep
        last_hidden_state rows so the [SEG] rows can be picked afterwards."""
        tok = self.manifest["tokens"]
        feats = self.run("vision_encoder", pixel_values=clip_pv)["image_features"]
        k = input_ids.index(IMAGE_TOKEN_INDEX)
        ids = np.array([[t if t != IMAGE_TOKEN_INDEX else 0 for t in input_ids]], np.int64)
        emb = self.run("embed_tokens", input_ids=ids)["inputs_embeds"]
        emb = np.concatenate([emb[:, :k], feats, emb[:, k + 1 :]], axis=1)
        mask = []
        for t in input_ids:
            mask += (
                [1] * NUM_IMAGE_TOKENS if t == IMAGE_TOKEN_INDEX else [0 if t in tok["mask_attention_for_ids"] else 1]
            )
        past = self.empty_past()
        out_ids, rows, pos0 = [], [], 0
        x = emb
        for _ in range(max_new_tokens):
            s = x.shape[1]
            am = np.array([mask + [1] * len(out_ids)], np.int64)
            o = self.run(
                "decoder",
                inputs_embeds=x.astype(np.float32),
                attention_mask=am,
                position_ids=np.arange(pos0, pos0 + s, dtype=np.int64)[None],
                **past,
            )
            rows.append(o["last_hidden_state"][0])
            past = {n.replace("present", "past_key_values"): v for n, v in o.items() if n.startswith("present.")}
            pos0 += s
            nxt = int(np.argmax(o["logits"][0, -1]))
            out_ids.append(nxt)
            if nxt in self.manifest["generation"]["stop_ids"]:
                break
            x = self.run("embed_tokens", input_ids=np.array([[nxt]], np.int64))["inputs_embeds"]
        hidden = np.concatenate(rows, axis=0)
        full = input_ids + out_ids
        seg_pos = seg_positions_of(full, tok["seg"])
        seg_hidden = (
            np.stack([hidden[expanded_index(j, full)] for j in seg_pos])
            if seg_pos
            else np.zeros((0, self.manifest["llm"]["hidden_size"]), np.float32)
        )
        return out_ids, seg_pos, seg_hidden.astype(np.float32)

    def teacher_forced(self, input_ids: list[int], clip_pv: np.ndarray, output_ids: list[int]) -> list[int]:
        """The argmax at each answer position when the given answer is fed (no compounding errors): the prompt's
        prefill, then one cached step per answer token (the decoder returns the last position's logits only)."""
        tok = self.manifest["tokens"]
        feats = self.run("vision_encoder", pixel_values=clip_pv)["image_features"]
        k = input_ids.index(IMAGE_TOKEN_INDEX)
        ids = np.array([[t if t != IMAGE_TOKEN_INDEX else 0 for t in input_ids]], np.int64)
        emb = self.run("embed_tokens", input_ids=ids)["inputs_embeds"]
        x = np.concatenate([emb[:, :k], feats, emb[:, k + 1 :]], axis=1)
        mask = []
        for t in input_ids:
            mask += (
                [1] * NUM_IMAGE_TOKENS if t == IMAGE_TOKEN_INDEX else [0 if t in tok["mask_attention_for_ids"] else 1]
            )
        past, pos0, picked = self.empty_past(), 0, []
        for t in [None, *output_ids[:-1]]:
            if t is not None:
                x = self.run("embed_tokens", input_ids=np.array([[t]], np.int64))["inputs_embeds"]
                mask.append(1)
            s = x.shape[1]
            o = self.run(
                "decoder",
                inputs_embeds=x,
                attention_mask=np.array([mask], np.int64),
                position_ids=np.arange(pos0, pos0 + s, dtype=np.int64)[None],
                **past,
            )
            past = {n.replace("present", "past_key_values"): v for n, v in o.items() if n.startswith("present.")}
            pos0 += s
            picked.append(int(np.argmax(o["logits"][0, -1])))
        return picked

    def masks(self, sam_pv: np.ndarray, seg_hidden: np.ndarray, resize_size, orig_size):
        if seg_hidden.shape[0] == 0:
            return np.zeros((0, orig_size[0], orig_size[1]), bool), None
        emb = self.run("seg_projector", seg_hidden=seg_hidden)["seg_embeddings"]
        img = self.run("sam_image_encoder", pixel_values=sam_pv)["image_embeddings"]
        o = self.run(
            "sam_mask_decoder",
            image_embeddings=img,
            seg_embeddings=emb,
            resize_size=np.array(resize_size, np.int64),
            orig_size=np.array(orig_size, np.int64),
        )
        return o["masks"][:, 0] > self.manifest["sam"]["threshold"], emb

    def run_case(self, tokenizer, image_path, prompt, history=None, assistant_prefix="", max_new_tokens=40) -> dict:
        from .tokenizer import decode, tokenize_prompt

        img = load_image(image_path)
        clip_pv = clip_preprocess(img)
        sam_pv, rs, os_ = sam_preprocess(img)
        text = build_prompt(prompt, history, assistant_prefix)
        ids = list(tokenize_prompt(tokenizer, text))
        out_ids, seg_pos, seg_hidden = self.generate(ids, clip_pv, max_new_tokens)
        masks, emb = self.masks(sam_pv, seg_hidden, rs, os_)
        full = [t for t in ids + out_ids if t != IMAGE_TOKEN_INDEX]
        return {
            "input_ids": ids,
            "output_ids": out_ids,
            "seg_positions": seg_pos,
            "text": clean_text(decode(tokenizer, full)),
            "masks_array": masks,
            "seg_embeddings": emb,
            "masks": [rle_of(m) for m in masks],
        }
