"""The PyTorch reference against LISA's own code paths: the llava_v1 prompt, chat.py's decode (cv2.imread) and the
resizes of the Pillow LISA pins (9.4.0, from models/export/lisa-pins), and the tiny checkpoints' LISA shape."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import REPO, report, tiny_model
from lisa_export.export import CLIP_MEAN, CLIP_STD, SAM_MEAN, SAM_STD, SYSTEM
from lisa_export.reference import build_prompt, clip_preprocess, load_image, sam_preprocess

IMAGES = REPO / "test" / "fixtures" / "images"
LISA_PINS = REPO / "models" / "export" / "lisa-pins" / "venv"
CLIP_SPEC = {
    "shortest_edge": 224,
    "resample": "bicubic",
    "crop": [224, 224],
    "rescale": 1 / 255,
    "mean": CLIP_MEAN,
    "std": CLIP_STD,
}
SAM_SPEC = {"long_side": 1024, "resample": "bilinear", "mean": SAM_MEAN, "std": SAM_STD}


def lisa_pins(jobs: list[dict], tmp_path) -> None:
    """Runs test/helpers/pillow_ref.py jobs with LISA's OpenCV 4.8 and Pillow 9.4.0."""
    f = tmp_path / "jobs.json"
    f.write_text(json.dumps(jobs))
    r = subprocess.run(
        [str(LISA_PINS), "run", str(REPO / "test" / "helpers" / "pillow_ref.py"), str(f)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and all(a.get("ok") for a in answers) and len(answers) == len(jobs), (answers, r.stderr)


def test_build_prompt_renders_empty_messages_as_lisa():
    """LISA's conversation.py (SeparatorStyle.TWO): a message that is empty renders as "ROLE:" with no separator."""
    got = build_prompt("Segment it.", [("What is this?", ""), ("", "A cat.")])
    assert got == (
        SYSTEM + " USER: <im_start><image><im_end>\nWhat is this? ASSISTANT:USER:ASSISTANT: A cat.</s>"
        "USER: Segment it. ASSISTANT:"
    )
    assert build_prompt("Hi", [], "Sure, [SEG].").endswith("\nHi ASSISTANT: Sure, [SEG].")


DECODED = [
    "coffee-adobergb.jpg",
    "rocket-p3.jpg",
    "chelsea-p3.png",
    "astronaut-adobergb.png",
    "chelsea-cmyk.jpg",
    "chelsea-cmyk-noadobe.jpg",
    "camera-16bit-gray.png",
    "camera-16bit-gray.tif",
    "chelsea-16bit.tif",
    "chelsea-16bit.png",
    "chelsea-palette-trns.png",
    "camera-gray-alpha.png",
    "chelsea-rgba.png",
    "coffee-exif6.jpg",
    "coffee-exif6.png",
    "coffee-exif6.webp",
    "chelsea.bmp",
]


def test_reference_decodes_as_chat_py(tmp_path):
    """load_image gives what cv2.imread of OpenCV 4.8 (LISA's pin) gives, for every kind of file."""
    jobs = [
        {"op": "cv2", "file": str(IMAGES / f), "out": str(tmp_path / f"{f}.rgb"), "meta": str(tmp_path / f"{f}.json")}
        for f in DECODED
    ]
    lisa_pins(jobs, tmp_path)
    bad = []
    for f in DECODED:
        meta = json.loads((tmp_path / f"{f}.json").read_text())
        want = np.fromfile(tmp_path / f"{f}.rgb", np.uint8).reshape(meta["h"], meta["w"], 3)
        got = np.asarray(load_image(IMAGES / f))
        if got.shape != want.shape or (got != want).any():
            bad.append(f"{f}: {got.shape} vs {want.shape}")
    report(f"reference decode = cv2.imread ({meta['versions']}) on {len(DECODED) - len(bad)}/{len(DECODED)} files")
    assert not bad


@pytest.mark.parametrize("size", [(240, 512), (300, 700), (220, 427), (1100, 3000), (3000, 1100)])
def test_reference_preprocessing_resizes_as_pillow_9_4(size, tmp_path):
    """CLIP and SAM tensors from resizes LISA's Pillow 9.4.0 computes; tall images are where Pillow 13 differs."""
    from PIL import Image

    w, h = size
    img = Image.open(IMAGES / "astronaut.png").convert("RGB").resize(size, Image.BICUBIC)
    raw = tmp_path / "in.rgb"
    np.asarray(img).tofile(raw)
    job = {"in": str(raw), "w": w, "h": h}
    lisa_pins(
        [
            {
                **job,
                "op": "clip",
                "spec": CLIP_SPEC,
                "out": str(tmp_path / "clip.f32"),
                "out_u8": str(tmp_path / "clip.u8"),
            },
            {
                **job,
                "op": "sam",
                "spec": SAM_SPEC,
                "out": str(tmp_path / "sam.f32"),
                "out_u8": str(tmp_path / "sam.u8"),
                "meta": str(tmp_path / "sam.json"),
            },
        ],
        tmp_path,
    )
    clip = clip_preprocess(img)
    sam, resize_size, _ = sam_preprocess(img)
    assert list(resize_size) == json.loads((tmp_path / "sam.json").read_text())["resize_size"]
    clip_d = np.abs(clip - np.fromfile(tmp_path / "clip.f32", "<f4").reshape(clip.shape)).max()
    sam_d = np.abs(sam - np.fromfile(tmp_path / "sam.f32", "<f4").reshape(sam.shape)).max()
    # one level is 1/255/0.27 = 0.015 (CLIP) and 1/57 = 0.017 (SAM); what remains is float32 rounding
    assert clip_d <= 1e-6 and sam_d <= 1e-5, (clip_d, sam_d)


def test_tiny_checkpoint_is_lisa_shaped():
    """What LISA's from_pretrained and chat.py read: config keys, a loadable vision tower, the CLIP preprocessor."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    _, _, _, ckpt, clip = tiny_model("7b", 1)
    cfg = json.loads((ckpt / "config.json").read_text())
    for key in (
        "train_mask_decoder",
        "out_dim",
        "mm_hidden_size",
        "vision_tower",
        "mm_use_im_start_end",
        "mm_vision_select_layer",
    ):
        assert key in cfg, key
    assert cfg["train_mask_decoder"] is True and cfg["mm_vision_select_layer"] == -2
    tower = CLIPVisionModel.from_pretrained(cfg["vision_tower"])
    assert tower.config.hidden_size == cfg["mm_hidden_size"]
    proc = CLIPImageProcessor.from_pretrained(clip)
    assert proc.crop_size == {"height": 224, "width": 224} and proc.resample == 3
    assert list(proc.image_mean) == CLIP_MEAN and list(proc.image_std) == CLIP_STD
