"""The six exported graphs as torch modules (docs/bundle-format.md, "Graphs").

Each wrapper calls the real submodules of the rebuilt LISA; nothing here re-implements a layer's arithmetic except
the attention core of the decoder, which takes explicit past key/value tensors instead of a transformers Cache object
(whose tracing changes between releases).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from .model import SAM_GRID, Lisa, postprocess_masks


class VisionEncoder(nn.Module):
    """CLIP up to hidden_states[-2] (the last encoder layer is not run), CLS dropped, then mm_projector."""

    def __init__(self, lisa: Lisa):
        super().__init__()
        self.vm = lisa.clip.vision_model
        self.proj = lisa.mm_projector

    def forward(self, pixel_values):
        h = self.vm.embeddings(pixel_values)
        h = self.vm.pre_layrnorm(h)
        for layer in self.vm.encoder.layers[:-1]:
            out = layer(h, None, None)
            h = out[0] if isinstance(out, tuple) else out
        return self.proj(h[:, 1:])


class EmbedTokens(nn.Module):
    def __init__(self, lisa: Lisa):
        super().__init__()
        self.embed = lisa.llm.model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(nn.Module):
    """LLaMA with explicit KV cache.  Inputs: inputs_embeds [1,S,H], attention_mask [1,P+S] (0 = masked key),
    position_ids [1,S], then past key/value per layer [1,KV,P,D].  Outputs: logits of the last position only [1,1,V]
    (the only ones greedy decoding reads: a 7B prompt's logits at every position are ~77 MB), post-norm last_hidden_state,
    present key/value per layer [1,KV,P+S,D], then this step's key/value rows per layer [1,KV,S,D] (new_key_values:
    what a caller that keeps its own cache appends, so it need not fetch the whole present cache every step)."""

    def __init__(self, lisa: Lisa):
        super().__init__()
        self.model = lisa.llm.model
        self.lm_head = lisa.llm.lm_head
        cfg = lisa.llm.config
        self.num_layers = cfg.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        h = inputs_embeds
        cos, sin = self.model.rotary_emb(h, position_ids)
        # additive mask [1,1,S,P+S]: key j visible to query i iff j <= P+i and attention_mask[j] == 1
        s = inputs_embeds.shape[1]
        t = attention_mask.shape[1]
        key_idx = torch.arange(t, dtype=torch.int64).unsqueeze(0)  # [1,T]
        q_idx = (torch.arange(s, dtype=torch.int64) + (t - s)).unsqueeze(1)  # [S,1]
        allowed = (key_idx <= q_idx) & (attention_mask[:, None, :] != 0)  # [1,S,T]
        neg = torch.finfo(torch.float32).min
        mask = torch.where(
            allowed, torch.zeros((), dtype=torch.float32), torch.full((), neg, dtype=torch.float32)
        ).unsqueeze(1)  # [1,1,S,T]
        presents, news = [], []
        for i, layer in enumerate(self.model.layers):
            attn = layer.self_attn
            residual = h
            x = layer.input_layernorm(h)
            b, q_len, _ = x.shape
            q = attn.q_proj(x).view(b, q_len, -1, attn.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, q_len, -1, attn.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, q_len, -1, attn.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            news += [k, v]
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            kr = repeat_kv(k, attn.num_key_value_groups)
            vr = repeat_kv(v, attn.num_key_value_groups)
            w = torch.matmul(q, kr.transpose(2, 3)) * attn.scaling + mask
            w = torch.softmax(w, dim=-1, dtype=torch.float32)
            o = torch.matmul(w, vr).transpose(1, 2).reshape(b, q_len, -1)
            h = residual + attn.o_proj(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = self.model.norm(h)
        return (self.lm_head(h[:, -1:]), h, *presents, *news)


class SegProjector(nn.Module):
    def __init__(self, lisa: Lisa):
        super().__init__()
        self.fc = lisa.text_hidden_fcs[0]

    def forward(self, seg_hidden):
        return self.fc(seg_hidden)


class SamImageEncoder(nn.Module):
    def __init__(self, lisa: Lisa):
        super().__init__()
        self.enc = lisa.image_encoder

    def forward(self, pixel_values):
        return self.enc(pixel_values)


class SamMaskDecoder(nn.Module):
    """LISA's use of SAM's prompt encoder + mask decoder + sam.postprocess_masks, image_pe baked in."""

    def __init__(self, lisa: Lisa):
        super().__init__()
        self.md = lisa.mask_decoder
        with torch.no_grad():
            self.register_buffer("image_pe", lisa.prompt_encoder.get_dense_pe().detach().clone())
            self.register_buffer(
                "no_mask", lisa.prompt_encoder.no_mask_embed.weight.detach().clone().reshape(1, -1, 1, 1)
            )

    def forward(self, image_embeddings, seg_embeddings, resize_size, orig_size):
        n = seg_embeddings.shape[0]
        sparse = seg_embeddings.unsqueeze(1)
        dense = self.no_mask.expand(n, -1, SAM_GRID, SAM_GRID)
        low_res, iou = self.md(
            image_embeddings=image_embeddings,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        masks = postprocess_masks(low_res, resize_size, orig_size)
        return masks, iou, low_res


class SamPromptDecoder(nn.Module):
    """The mask decoder with point and box prompts beside LISA's [SEG] embedding (refining a mask by clicking).

    SAM's prompt encoder, as LISA's fork calls it with points and boxes: each prompt point's positional encoding plus
    its label's embedding (1 positive, 0 negative, 2/3 the box's top-left/bottom-right corners, -1 the padding point
    that SAM appends when there is no box), then LISA's text embedding appended last.  Coordinates are pixels of the
    original image; the graph maps them into the resized image as ResizeLongestSide.apply_coords does.  With no points
    (P = 0) the sparse prompt is the [SEG] embedding alone: SamMaskDecoder's arithmetic."""

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module):
        super().__init__()
        self.md = mask_decoder
        self.pe_layer = prompt_encoder.pe_layer
        self.input_hw = tuple(prompt_encoder.input_image_size)
        with torch.no_grad():
            self.register_buffer("image_pe", prompt_encoder.get_dense_pe().detach().clone())
            self.register_buffer("no_mask", prompt_encoder.no_mask_embed.weight.detach().clone().reshape(1, -1, 1, 1))
            self.register_buffer("not_a_point", prompt_encoder.not_a_point_embed.weight.detach().clone())
            self.register_buffer(
                "label_embed", torch.cat([e.weight.detach().clone() for e in prompt_encoder.point_embeddings])
            )

    def forward(self, image_embeddings, seg_embeddings, point_coords, point_labels, resize_size, orig_size):
        n = seg_embeddings.shape[0]
        scale = resize_size.flip(0).to(torch.float32) / orig_size.flip(0).to(torch.float32)  # (neww/w, newh/h)
        coords = (point_coords * scale + 0.5) / torch.tensor([self.input_hw[1], self.input_hw[0]], dtype=torch.float32)
        emb = self.pe_layer._pe_encoding(coords)  # [N,P,C]
        labels = point_labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(torch.float32) + self.not_a_point * (labels == -1).to(torch.float32)
        for i in range(self.label_embed.shape[0]):
            emb = emb + self.label_embed[i] * (labels == i).to(torch.float32)
        sparse = torch.cat([emb, seg_embeddings.unsqueeze(1)], dim=1)
        dense = self.no_mask.expand(n, -1, self.image_pe.shape[-2], self.image_pe.shape[-1])
        low_res, iou = self.md(
            image_embeddings=image_embeddings,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        masks = postprocess_masks(low_res, resize_size, orig_size)
        return masks, iou, low_res
