"""train:tiny's pieces: LISA's losses reach every part LISA's inference uses, and the targets line up with the mask
decoder's grid."""

from __future__ import annotations

import random

import numpy as np
import torch
from lisa_export import train


def test_one_step_trains_every_part_that_inference_uses(tmp_path):
    scenes = train.make_scenes(3, 2, log=lambda *_: None)
    from lisa_export.tokenizer import load_slow_tokenizer

    tok = load_slow_tokenizer(train.train_tokenizer(tmp_path / "tok", 3, scenes))
    train.tokenize_examples(tok, scenes)
    lisa, _, _ = train.build_model(3, len(tok))
    lisa.train()
    loss, m = train.step_loss(lisa, scenes, tok.convert_tokens_to_ids("[SEG]"), [0, 1])
    loss.backward()
    assert all(np.isfinite(v) for v in m.values()) and m["ce"] > 0 and m["bce"] > 0 and m["dice"] > 0
    # not used by LISA's inference, so no gradient: CLIP's last layer and post-norm (hidden_states[-2] is read), the
    # IoU head and the multimask tokens (multimask_output=False), the prompt encoder's point and mask inputs
    unused = (
        f"clip.vision_model.encoder.layers.{lisa.clip.config.num_hidden_layers - 1}.",
        "clip.vision_model.post_layernorm",
        "iou_prediction_head",
        "iou_token",
        "output_hypernetworks_mlps.1.",
        "output_hypernetworks_mlps.2.",
        "output_hypernetworks_mlps.3.",
        "prompt_encoder.point_embeddings",
        "prompt_encoder.not_a_point_embed",
        "prompt_encoder.mask_downscaling",
        "mask_tokens",
    )
    for name, p in lisa.named_parameters():
        if any(u in name for u in unused):
            continue
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"{name} gets no gradient"


def test_low_res_target_lines_up_with_the_padded_1024_square():
    m = np.zeros((300, 600), np.uint8)
    m[:, 300:] = 1  # right half of a 2:1 image
    t = train.low_res_target(m, (512, 1024))  # ResizeLongestSide: 300x600 -> 512x1024
    assert t.shape == (256, 256)
    assert float(t[:128, 129:].min()) == 1.0 and float(t[:128, :127].max()) == 0.0  # column 128: the resized edge
    assert float(t[128:].max()) == 0.0  # the padding below the image
    assert torch.isclose(t.sum(), torch.tensor(128 * 128.0), atol=64)


def test_data_parallel_step_is_the_halves_losses_gradient_bit_for_bit(tmp_path):
    """The threaded step (each half of the batch on its own core) gives exactly the gradient of the mean of the halves'
    losses computed one after the other: the threads change where the work runs, not what is computed."""
    from concurrent.futures import ThreadPoolExecutor

    from lisa_export.tokenizer import load_slow_tokenizer

    scenes = train.make_scenes(3, 4, log=lambda *_: None)
    tok = load_slow_tokenizer(train.train_tokenizer(tmp_path / "tok", 3, scenes))
    train.tokenize_examples(tok, scenes)
    seg = tok.convert_tokens_to_ids("[SEG]")
    lisa, _, _ = train.build_model(3, len(tok))
    lisa.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(train.WORKERS, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            m = train.data_parallel_step(lisa, scenes, seg, [0, 1, 0, 1], pool)
        threaded = {n: p.grad.clone() for n, p in lisa.named_parameters() if p.grad is not None}
        lisa.zero_grad(set_to_none=True)
        with ThreadPoolExecutor(1) as pool:  # --threads 1: the parts one after the other, the same gradient
            train.data_parallel_step(lisa, scenes, seg, [0, 1, 0, 1], pool)
        one_thread = {n: p.grad.clone() for n, p in lisa.named_parameters() if p.grad is not None}
        lisa.zero_grad(set_to_none=True)
        for half in (slice(0, 2), slice(2, 4)):
            loss, _ = train.step_loss(lisa, scenes[half], seg, [0, 1, 0, 1][half])
            (loss / 2).backward()
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(m["ce"]) and 0 <= m["iou_lisa"] <= 1
    sequential = {n: p.grad for n, p in lisa.named_parameters() if p.grad is not None}
    assert threaded.keys() == sequential.keys()
    for n, g in sequential.items():
        assert torch.equal(threaded[n], g) and torch.equal(one_thread[n], g), n


def test_sam_pretraining_trains_sam_and_lisa_stage_leaves_the_encoders_frozen(tmp_path):
    """SAM's stage (point and box prompts, focal + Dice + IoU MSE) reaches SAM's image encoder, its prompt encoder's
    point and box embeddings and the IoU head; LISA's stage then reads the cached embeddings of the frozen encoder."""
    from concurrent.futures import ThreadPoolExecutor

    from lisa_export.tokenizer import load_slow_tokenizer

    scenes = train.make_scenes(3, 2, log=lambda *_: None)
    assert all(len(s["all"]) >= 2 and len(s["all"]) >= len(s["objects"]) for s in scenes)
    lisa, _, _ = train.build_model(3, 1028)
    lisa.train()
    loss, m = train.sam_step_loss(lisa, scenes, [random.Random(i) for i in range(2)])
    loss.backward()
    assert np.isfinite(float(loss)) and 0 <= m["iou"] <= 1
    for prefix in ("image_encoder.", "mask_decoder.transformer.", "mask_decoder.iou_prediction_head."):
        grads = [p.grad for n, p in lisa.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
    assert lisa.prompt_encoder.point_embeddings[1].weight.grad is not None  # a foreground point
    assert m["prompts"] == 4  # two of each scene's shapes by default
    lisa.zero_grad(set_to_none=True)
    _, every = train.sam_step_loss(lisa, scenes, [random.Random(i) for i in range(2)], per_image=0)
    assert every["prompts"] == sum(len(s["all"]) for s in scenes) > 4  # --sam-prompts 0: every shape of the scene
    lisa.zero_grad(set_to_none=True)
    loss, _ = train.sam_step_loss(lisa, scenes, [random.Random(i) for i in range(2)], per_image=0, points=0.0)
    loss.backward()  # --sam-points 0: boxes only (the corners' embeddings 2 and 3), no foreground point
    assert lisa.prompt_encoder.point_embeddings[1].weight.grad is None
    assert lisa.prompt_encoder.point_embeddings[2].weight.grad is not None
    lisa.zero_grad(set_to_none=True)

    tok = load_slow_tokenizer(train.train_tokenizer(tmp_path / "tok", 3, scenes))
    train.tokenize_examples(tok, scenes)
    for p in [*lisa.image_encoder.parameters(), *lisa.prompt_encoder.parameters()]:
        p.requires_grad_(False)
    with ThreadPoolExecutor(2) as pool:
        train.embed_images(lisa, scenes, pool)
    with torch.no_grad():
        again = lisa.image_encoder(train.sam_pixels(scenes[1]["sam_rgb"]))
    assert torch.equal(again, scenes[1]["img_emb"])
    loss, _ = train.step_loss(lisa, scenes, tok.convert_tokens_to_ids("[SEG]"), [0, 1])
    loss.backward()
    assert all(p.grad is None for p in lisa.image_encoder.parameters())
    assert lisa.mask_decoder.output_upscaling[0].weight.grad is not None
    assert lisa.text_hidden_fcs[0][0].weight.grad is not None


def test_frozen_encoder_phase_trains_only_the_prompt_side_and_sam_mix_keeps_sam_loss(tmp_path):
    """The recipe of docs/evaluation.md: after SAM's stage, the image encoder frozen and its embeddings cached, SAM's
    frozen-encoder phase moves the prompt encoder and mask decoder only; with --sam-mix, LISA's stage adds SAM's loss
    on the cached embeddings; the box-prompt probe scores IoUs."""
    from concurrent.futures import ThreadPoolExecutor

    from lisa_export.tokenizer import load_slow_tokenizer

    scenes = train.make_scenes(3, 2, log=lambda *_: None)
    lisa, _, _ = train.build_model(3, 1028)
    for p in lisa.image_encoder.parameters():
        p.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in lisa.named_parameters()}
    with ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        train.embed_images(lisa, scenes, pool)
        lisa.train()
        train.pretrain_sam(lisa, scenes, 1, 2, 2e-3, 3, pool, lambda *_: None, 0.0, 0, frozen=True)
    moved = {n for n, p in lisa.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith(("prompt_encoder.", "mask_decoder.")) for n in moved)
    assert any(n.startswith("mask_decoder.transformer.") for n in moved)
    iou, overlap = train.prompt_following(lisa, scenes)
    assert 0 <= iou <= 1 and 0 <= overlap <= 1

    tok = load_slow_tokenizer(train.train_tokenizer(tmp_path / "tok", 3, scenes))
    train.tokenize_examples(tok, scenes)
    lisa.zero_grad(set_to_none=True)
    loss, m = train.mixed_loss(
        lisa, scenes, tok.convert_tokens_to_ids("[SEG]"), [0, 1], [random.Random(i) for i in (0, 1)]
    )
    loss.backward()
    assert 0 <= m["sam_iou"] <= 1 and np.isfinite(float(loss))
    assert m["sam_prompts"] == sum(len(s["all"]) for s in scenes)  # every shape of each scene by default
    assert (
        lisa.mask_decoder.iou_prediction_head.layers[0].weight.grad is not None
    )  # only SAM's loss trains the IoU head
    assert lisa.text_hidden_fcs[0][0].weight.grad is not None
    lisa.zero_grad(set_to_none=True)
    _, one = train.mixed_loss(
        lisa, scenes, tok.convert_tokens_to_ids("[SEG]"), [0, 1], [random.Random(i) for i in (0, 1)], per_image=1
    )
    assert one["sam_prompts"] == 2  # --sam-mix-prompts 1: one shape of each scene


def test_scenes_preprocessed_on_threads_are_the_same_bytes():
    from concurrent.futures import ThreadPoolExecutor

    alone = train.make_scenes(5, 3, log=lambda *_: None)
    with ThreadPoolExecutor(2) as pool:
        threaded = train.make_scenes(5, 3, log=lambda *_: None, pool=pool)
    for a, b in zip(alone, threaded, strict=True):
        assert a["anno"] == b["anno"] and a["describe"] == b["describe"]
        for key in ("clip", "sam_rgb", "merged"):
            assert torch.equal(a[key], b[key]), key
        for key in ("all", "objects"):
            assert len(a[key]) == len(b[key]) and all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key
