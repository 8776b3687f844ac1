"""The six exported graphs as torch modules (docs/bundle-format.md, "Graphs").

Each wrapper calls the real submodules of the rebuilt LISA; nothing here re-implements a layer's arithmetic except
the attention core of the decoder, which takes explicit past key/value tensors instead of a transformers Cache object
(whose tracing changes between releases).
"""

from __future__ import annotations

import math

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


def k2s2_as_matmul(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A ConvTranspose2d(kernel 2, stride 2) as a MatMul to 4 * C_out channels ordered (di, dj, c_out): each input pixel
    has its own 2x2 output block, so no two products of the convolution meet in one sum, and the MatMul's sums are the
    convolution's.  Returns (weight [C_in, 4 * C_out], bias [4 * C_out])."""
    w = conv.weight.detach()
    assert conv.kernel_size == (2, 2) and conv.stride == (2, 2) and conv.padding == (0, 0), conv
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], 4 * w.shape[1]).clone(), conv.bias.detach().repeat(4).clone()


class SamPromptDecoder(nn.Module):
    """The mask decoder with point and box prompts beside LISA's [SEG] embedding (refining a mask by clicking).

    SAM's prompt encoder, as LISA's fork calls it with points and boxes: each prompt point's positional encoding plus
    its label's embedding (1 positive, 0 negative, 2/3 the box's top-left/bottom-right corners, -1 the padding point
    that SAM appends when there is no box), then LISA's text embedding appended last.  Coordinates are pixels of the
    original image; the graph maps them into the resized image as ResizeLongestSide.apply_coords does.  With no points
    (P = 0) the sparse prompt is the [SEG] embedding alone: SamMaskDecoder's arithmetic.

    Made for speed (a refine is a click; docs/extension.md has the figures), with SAM's arithmetic up to summation
    order: MaskDecoder.predict_masks for mask 0 only (LISA's multimask_output=False; the other three hypernetworks
    and masks are not computed), TwoWayTransformer.forward over SAM's own layers with their cross attentions' image-side
    projections folded onto the prompt tokens (two_way_block; the final attention for the IoU and mask-0 tokens only),
    the dense positional encoding stored already in token layout, the output upscaling's two ConvTranspose2d(k=2, s=2)
    as MatMuls on the tokens (k2s2_as_matmul; the 2x2 blocks are put in place once, on the one-channel mask logits),
    and no postprocess_masks: the host upsamples low_res_masks to the image (src/host/mask-upsample.ts)."""

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module):
        super().__init__()
        self.md = mask_decoder
        self.pe_layer = prompt_encoder.pe_layer
        self.input_hw = tuple(prompt_encoder.input_image_size)
        conv1, self.norm, self.act1, conv2, self.act2 = mask_decoder.output_upscaling
        with torch.no_grad():
            image_pe = prompt_encoder.get_dense_pe().detach()
            self.register_buffer("image_pe_tokens", image_pe.flatten(2).permute(0, 2, 1).contiguous())
            self.register_buffer("no_mask", prompt_encoder.no_mask_embed.weight.detach().clone().reshape(1, -1, 1, 1))
            self.register_buffer("not_a_point", prompt_encoder.not_a_point_embed.weight.detach().clone())
            self.register_buffer(
                "label_embed", torch.cat([e.weight.detach().clone() for e in prompt_encoder.point_embeddings])
            )
            for i, conv in ((1, conv1), (2, conv2)):
                w, b = k2s2_as_matmul(conv)
                self.register_buffer(f"up{i}_w", w)
                self.register_buffer(f"up{i}_b", b)

    def forward(self, image_embeddings, seg_embeddings, point_coords, point_labels, resize_size, orig_size):
        scale = resize_size.flip(0).to(torch.float32) / orig_size.flip(0).to(torch.float32)  # (neww/w, newh/h)
        coords = (point_coords * scale + 0.5) / torch.tensor([self.input_hw[1], self.input_hw[0]], dtype=torch.float32)
        emb = self.pe_layer._pe_encoding(coords)  # [N,P,C]
        labels = point_labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(torch.float32) + self.not_a_point * (labels == -1).to(torch.float32)
        for i in range(self.label_embed.shape[0]):
            emb = emb + self.label_embed[i] * (labels == i).to(torch.float32)
        sparse = torch.cat([emb, seg_embeddings.unsqueeze(1)], dim=1)
        return self.mask0(image_embeddings, sparse)

    def mask0(self, image_embeddings, sparse):
        """MaskDecoder.predict_masks (with TwoWayTransformer.forward inlined) for mask 0: (iou [N,1], low_res
        [N,1,256,256])."""
        md, t = self.md, self.md.transformer
        n = sparse.shape[0]
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)
        _, c, h, w = image_embeddings.shape
        # src = image + dense (no_mask broadcast), in token layout [N, h*w, C]
        keys = (image_embeddings + self.no_mask).flatten(2).permute(0, 2, 1).expand(n, -1, -1)
        queries = tokens
        for layer in t.layers:
            queries, keys = two_way_block(layer, queries, keys, tokens, self.image_pe_tokens)
        # Only the IoU token and mask token 0 are read from here on (each token's attention and LayerNorm is its own).
        q2 = queries[:, :2]
        attn_out = token_to_image(t.final_attn_token_to_image, q2 + tokens[:, :2], keys + self.image_pe_tokens, keys)
        hs = t.norm_final_attn(q2 + attn_out)

        # 2-D MatMul + Add: ONNX Runtime runs them as one Gemm (bias written with the product, not in another pass).
        c1 = self.up1_w.shape[1] // 4
        up = torch.addmm(self.up1_b, keys.reshape(n * h * w, c), self.up1_w).reshape(n * h * w * 4, c1)
        up = self.act1(nn.functional.layer_norm(up, (c1,), self.norm.weight, self.norm.bias, self.norm.eps))
        c2 = self.up2_w.shape[1] // 4
        up = torch.addmm(self.up2_b, up, self.up2_w)  # pixel (i, j, di, dj) x (ei, ej, c2)
        up = self.act2(up.reshape(n, h * w * 16, c2))  # pixel (i, j, di, dj, ei, ej)
        hyper = md.output_hypernetworks_mlps[0](hs[:, 1, :])  # mask token 0
        logits = (up @ hyper.unsqueeze(-1)).reshape(n, h, w, 2, 2, 2, 2)
        low_res = logits.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, 1, 4 * h, 4 * w)  # row 4i+2di+ei, column 4j+2dj+ej
        iou = md.iou_prediction_head(hs[:, 0, :])[:, :1]
        return iou, low_res


# SAM's two-way transformer with its cross attentions' image-side projections folded onto the few prompt tokens (T,
# about 8-12).  SAM's Attention projects all h*w = 4096 image tokens from 256 to its internal 128 channels (8 heads of
# 16) for keys and values (token -> image) or queries and the output (image -> token): four [4096 x 256 x 128]
# MatMuls per attention.  By associativity each becomes one MatMul of the image tokens with 8*T columns built from
# the tokens, e.g. per head h, q_h k_h^T = (q_h Wk_h) (X + pe)^T + q_h bk_h: the same sums in another order.


def _heads(x, heads: int):
    """[N, L, heads * d] -> [N, heads, L, d] (SAM's Attention._separate_heads)."""
    n, length, c = x.shape
    return x.reshape(n, length, heads, c // heads).transpose(1, 2)


def token_to_image(attn, q, k, v):
    """``attn(q=q, k=k, v=v)`` for T tokens ``q`` [N, T, C] attending to image tokens ``k``, ``v`` [N, HW, C]: the
    logits (q_h Wk_h / sqrt(d)) k^T, the bias q_h bk_h left out (constant along the softmax axis), and the values
    (P_h v) Wv_h^T + bv_h (each row of P_h sums to 1)."""
    heads, c = attn.num_heads, attn.embedding_dim
    d = attn.internal_dim // heads
    n, tk = q.shape[0], q.shape[1]
    qh = _heads(attn.q_proj(q), heads)  # [N, H, T, d]
    a = (qh @ attn.k_proj.weight.reshape(heads, d, c)) / math.sqrt(d)  # [N, H, T, C]
    p = torch.softmax(a.reshape(n, heads * tk, c) @ k.transpose(1, 2), dim=-1)  # [N, H*T, HW]
    pv = (p @ v).reshape(n, heads, tk, c)  # [N, H, T, C]
    out = pv @ attn.v_proj.weight.reshape(heads, d, c).transpose(1, 2) + attn.v_proj.bias.reshape(heads, 1, d)
    return attn.out_proj(out.transpose(1, 2).reshape(n, tk, heads * d))


def image_to_token(attn, q, k, v):
    """``attn(q=q, k=k, v=v)`` for image tokens ``q`` [N, HW, C] attending to T tokens ``k``, ``v`` [N, T, C]: the
    logits q (Wq_h^T k_h^T / sqrt(d)) + bq_h k_h^T / sqrt(d) (that bias varies along the softmax axis: kept), and the
    output sum_h P_h (v_h Wo_h^T) + bo."""
    heads, c = attn.num_heads, attn.embedding_dim
    d = attn.internal_dim // heads
    n, hw, tk = q.shape[0], q.shape[1], k.shape[1]
    kt = _heads(attn.k_proj(k), heads).transpose(2, 3) / math.sqrt(d)  # [N, H, d, T]
    wq = attn.q_proj.weight.reshape(heads, d, c)
    b = (wq.transpose(1, 2) @ kt).permute(0, 2, 1, 3).reshape(n, c, heads * tk)  # [N, C, H*T]
    bias = (attn.q_proj.bias.reshape(heads, 1, d) @ kt).reshape(n, 1, heads * tk)
    p = torch.softmax((q @ b + bias).reshape(n, hw, heads, tk), dim=-1).reshape(n, hw, heads * tk)
    wo = attn.out_proj.weight.reshape(c, heads, d).permute(1, 2, 0)  # [H, d, C]: Wo_h^T
    # bo / H added to each row of v_h Wo_h^T: the rows of P (H heads, each summing to 1) then add bo once.
    m = (_heads(attn.v_proj(v), heads) @ wo + attn.out_proj.bias / heads).reshape(n, heads * tk, c)  # [N, H*T, C]
    return p @ m


def two_way_block(layer, queries, keys, query_pe, key_pe):
    """TwoWayAttentionBlock.forward with the two cross attentions folded (token_to_image, image_to_token)."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    k = keys + key_pe
    queries = layer.norm2(queries + token_to_image(layer.cross_attn_token_to_image, queries + query_pe, k, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = layer.norm4(keys + image_to_token(layer.cross_attn_image_to_token, k, queries + query_pe, queries))
    return queries, keys
