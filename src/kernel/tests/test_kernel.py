"""%%segment in a real kernel against the real host: the result display matches the goldens, a follow-up runs no
image encoder, every error is one line and the next cell works, and no host outlives its kernel.

The tests of this module share one kernel and run in order (each leaves the magic configured for the next)."""

from __future__ import annotations

import base64
import os
import signal
import threading

import numpy as np
import pycocotools.mask as cocomask
import pytest
from conftest import BUNDLE, HOSTILE, RESULT_MIME, Kernel, goldens, kernel_env, pid_alive, wait_gone

from reason_segment.png import MAX_SIDE

GOLDEN = next(c for c in goldens() if c["masks"] and c["assistant_prefix"])
GOLDEN_IMAGE = os.path.join(BUNDLE, GOLDEN["image"])
CHELSEA = os.path.join(BUNDLE, "images", "chelsea.png")
QUICK = f"%%segment {CHELSEA} -n 2 -q\nWhat is here?"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def one_line_error(ex, *fragments: str) -> str:
    """The cell failed with exactly one readable line (no traceback wall) containing every fragment."""
    assert ex.status == "error", (ex.stdout, ex.stderr)
    lines = ex.error_lines()
    assert len(lines) == 1 and "\n" not in lines[0].strip(), lines
    assert "Traceback" not in lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in ex.stderr
    return lines[0]


def assert_works(kernel: Kernel) -> None:
    ex = kernel.execute(QUICK)
    assert ex.status == "ok", ex.error_lines()
    assert any(RESULT_MIME in d["data"] for d in ex.displays)


def test_no_model_configured(kernel):
    ex = kernel.execute(f"%%segment {GOLDEN_IMAGE}\nSegment the cup.")
    one_line_error(ex, "No model is configured", "REASON_SEGMENT_MODEL")


def test_segment_cell_displays_the_result_matching_the_goldens(kernel):
    assert kernel.execute(f"%segment_config --model {BUNDLE}").status == "ok"
    code = (
        f"%%segment {GOLDEN_IMAGE} --assistant-prefix '{GOLDEN['assistant_prefix']}' "
        f"--max-new-tokens {GOLDEN['max_new_tokens']} --out first\n{GOLDEN['prompt']}"
    )
    ex = kernel.execute(code)
    assert ex.status == "ok", ex.error_lines()
    types = [m["msg_type"] for m in ex.messages]
    # The answer streamed into the cell as it was generated, then the rich display replaced it.
    assert "stream" in types and "clear_output" in types
    assert types.index("stream") < types.index("clear_output") < types.index("display_data")
    displays = [d for d in ex.displays if RESULT_MIME in d["data"]]
    assert len(displays) == 1
    data = displays[0]["data"]
    payload = data[RESULT_MIME]
    assert payload["format"] == "reason-segment-result/1"
    assert payload["outputIds"] == GOLDEN["output_ids"]
    assert payload["image"]["data"], "the renderer gets the image bytes"
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # The overlay as a notebook keeps it: at most png.MAX_SIDE pixels a side, the image's aspect kept.
    width, height = payload["image"]["width"], payload["image"]["height"]
    scale = max(1.0, max(width, height) / MAX_SIDE)
    assert int.from_bytes(png[16:20], "big") == max(1, int(width / scale + 0.5))
    assert int.from_bytes(png[20:24], "big") == max(1, int(height / scale + 0.5))
    assert "[SEG]" in data["text/plain"] and "2 masks" in data["text/plain"]
    assert len(payload["masks"]) == len(GOLDEN["masks"]) == 2
    for got, want in zip(payload["masks"], GOLDEN["masks"]):
        a = cocomask.decode({"size": got["rle"]["size"], "counts": got["rle"]["counts"].encode()}).astype(bool)
        b = cocomask.decode({"size": want["rle"]["size"], "counts": want["rle"]["counts"].encode()}).astype(bool)
        assert iou(a, b) >= 0.999

    # The next cell uses the masks as numpy arrays: `_`, `_segment` and --out all hold the result.
    areas = kernel.value(
        "[int(m.sum()) for m in _.masks] if (_ is first is _segment) and all(m.dtype == bool "
        "and m.shape == _.image_size for m in first.masks) else None"
    )
    assert areas == [m["area"] for m in GOLDEN["masks"]]


def test_followup_runs_no_image_encoder(kernel):
    before = kernel.status()["counters"]
    ex = kernel.execute("%segment_followup Now segment only the spoon.")
    assert ex.status == "ok", ex.error_lines()
    after = kernel.status()["counters"]
    assert "listening on stdio" in kernel.execute("%segment_log 200").stdout
    assert after["visionEncoderRuns"] == before["visionEncoderRuns"] >= 1
    assert after["samEncoderRuns"] == before["samEncoderRuns"] >= 1
    assert after["requests"] == before["requests"] + 1
    payload = next(d["data"][RESULT_MIME] for d in ex.displays if RESULT_MIME in d["data"])
    assert payload["timings"]["cacheHit"] is True
    first_answer = kernel.value("first.answer")
    assert payload["history"] == [
        {"user": GOLDEN["prompt"], "assistant": f"{GOLDEN['assistant_prefix']} {first_answer}".strip()}
    ]
    # The cell form with options, continuing the same conversation (two turns re-fed now).
    ex = kernel.execute("%%segment_followup -n 3 --out third -q\nAnd the saucer?")
    assert ex.status == "ok", ex.error_lines()
    assert kernel.value("[len(third.history), len(third.output_ids)]") == [2, 3]
    assert kernel.status()["counters"]["visionEncoderRuns"] == before["visionEncoderRuns"]


def test_another_model_per_cell_matches_its_goldens(kernel):
    bundle = os.path.join(os.path.dirname(BUNDLE), "tiny-13b")
    golden = next(c for c in goldens(bundle) if c["masks"])
    ex = kernel.execute(
        f"%%segment {os.path.join(bundle, golden['image'])} --model {bundle} -q "
        f"--assistant-prefix '{golden['assistant_prefix']}' -n {golden['max_new_tokens']}\n"
        f"{golden['prompt']}"
    )
    assert ex.status == "ok", ex.error_lines()
    payload = next(d["data"][RESULT_MIME] for d in ex.displays if RESULT_MIME in d["data"])
    assert payload["model"]["variant"].startswith("tiny-13b")
    assert payload["outputIds"] == golden["output_ids"]
    for got, want in zip(payload["masks"], golden["masks"], strict=True):
        a = cocomask.decode({"size": got["rle"]["size"], "counts": got["rle"]["counts"].encode()}).astype(bool)
        b = cocomask.decode({"size": want["rle"]["size"], "counts": want["rle"]["counts"].encode()}).astype(bool)
        assert iou(a, b) >= 0.999
    assert "stream" not in [m["msg_type"] for m in ex.messages], "--quiet streams nothing"


@pytest.mark.parametrize(
    "name,fragments",
    [
        ("no-such-file.png", ["no-such-file.png", "does not exist"]),
        ("truncated.png", ["truncated.png", "damaged or truncated"]),
        ("not-an-image.png", ["not-an-image.png", "not an image"]),
    ],
)
def test_image_errors_are_one_line_and_the_next_cell_works(kernel, name, fragments):
    ex = kernel.execute(f"%%segment {os.path.join(HOSTILE, name)}\nSegment the cat.")
    one_line_error(ex, *fragments)
    assert_works(kernel)


def test_a_folder_that_is_not_a_bundle(kernel):
    ex = kernel.execute(f"%%segment {CHELSEA} --model {HOSTILE}\nWhat is here?")
    one_line_error(ex, "lisa.manifest.json")
    assert_works(kernel)


def test_host_not_found_then_found_again(kernel):
    pid = kernel.host_pid()
    assert kernel.execute("%segment_config --host /nonexistent/server.js").status == "ok"
    ex = kernel.execute(f"%%segment {CHELSEA}\nWhat is here?")
    one_line_error(ex, "host was not found", "/nonexistent/server.js")
    assert wait_gone(pid), "the old host was stopped when the setting changed"
    ex = kernel.execute(f"%segment_config --reset\n%segment_config --model {BUNDLE}")
    assert ex.status == "ok", ex.error_lines()
    assert_works(kernel)
    ex = kernel.execute(f"%%segment {CHELSEA} --host /nonexistent/server.js\nWhat is here?")
    one_line_error(ex, "host was not found")
    assert_works(kernel)


def test_node_not_found(kernel):
    assert kernel.execute("%segment_config --node /no/such/node").status == "ok"
    one_line_error(kernel.execute(QUICK), "Node.js was not found", "REASON_SEGMENT_NODE")
    assert kernel.execute(f"%segment_config --reset\n%segment_config --model {BUNDLE}").status == "ok"
    assert_works(kernel)


def _streaming_cell_then(kernel: Kernel, action) -> object:
    """Runs a long %%segment and calls `action()` once the first streamed text has arrived."""
    fired = threading.Event()

    def on_msg(msg):
        if (
            msg["msg_type"] == "stream"
            and not fired.is_set()
            and "Loading" not in msg["content"]["text"]
            and "Starting" not in msg["content"]["text"]
        ):
            fired.set()
            action()

    ex = kernel.execute(f"%%segment {CHELSEA} -n 2000\nDescribe everything in great detail.", on_msg=on_msg)
    assert fired.is_set(), "text was streamed before the answer finished"
    return ex


def test_interrupt_cancels_the_request_and_keeps_the_host(kernel):
    pid = kernel.host_pid()
    ex = _streaming_cell_then(kernel, kernel.km.interrupt_kernel)
    one_line_error(ex, "Cancelled")
    assert kernel.host_pid() == pid and pid_alive(pid)
    assert_works(kernel)


def test_host_crash_mid_request_is_one_line_and_the_next_cell_restarts_it(kernel):
    pid = kernel.host_pid()
    assert pid and pid_alive(pid)
    ex = _streaming_cell_then(kernel, lambda: os.kill(pid, signal.SIGKILL))
    one_line_error(ex, "host stopped", "signal 9", "started again")
    assert wait_gone(pid)
    assert_works(kernel)
    new_pid = kernel.host_pid()
    assert new_pid and new_pid != pid


def test_env_defaults_and_no_host_left_after_shutdown_or_restart():
    k = Kernel(kernel_env(REASON_SEGMENT_MODEL=BUNDLE, REASON_SEGMENT_DEVICE="cpu"))
    try:
        assert k.execute("%load_ext reason_segment").status == "ok"
        assert_works(k)  # model and device from the environment
        pid = k.host_pid()
        assert pid and pid_alive(pid)
        # Restart that kills the kernel outright (no atexit): the host sees its stdin close and exits.
        k.km.restart_kernel(now=True)
        k.kc.wait_for_ready(timeout=60)
        assert wait_gone(pid, 10), f"host {pid} outlived a killed kernel"
        assert k.execute("%load_ext reason_segment").status == "ok"
        assert_works(k)
        pid2 = k.host_pid()
        assert pid2 and pid2 != pid
        # Graceful restart (shutdown_request to the kernel): the magic shuts the host down on exit.
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        assert wait_gone(pid2, 10), f"host {pid2} outlived a restarted kernel"
        assert k.execute("%load_ext reason_segment").status == "ok"
        assert_works(k)
        pid3 = k.host_pid()
    finally:
        k.shutdown()
    assert wait_gone(pid3, 10), f"host {pid3} outlived a shut down kernel"
