"""%%segment against a remote server (`reason-segment serve`, Open Inference Protocol v2) instead of a host process:
the same display and goldens, the answer streamed, a follow-up that sends only the image's sha256, one-line errors."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time

import pytest
from conftest import BUNDLE, REPO, RESULT_MIME, ask, decode, goldens, iou, refine_goldens

GOLDEN = next(c for c in goldens() if c["masks"] and c["assistant_prefix"])
GOLDEN_IMAGE = os.path.join(BUNDLE, GOLDEN["image"])
TOKEN = hashlib.sha256(b"kernel remote test").hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    token_file = tmp / "tokens"
    token_file.write_text(TOKEN + "\n")
    log = open(tmp / "stderr", "w+")
    proc = subprocess.Popen(
        [
            "node",
            os.path.join(REPO, "out", "src", "host", "cli.js"),
            "serve",
            "--model",
            BUNDLE,
            "--port",
            "0",
            "--token-file",
            str(token_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp)},
    )
    deadline = time.time() + 60
    while True:
        log.seek(0)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v2", log.read())
        if m:
            break
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"the server did not start: {log.read()}")
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{m.group(1)}", "token_file": str(token_file), "tmp": tmp}
    proc.terminate()
    proc.wait(30)
    log.close()


def result_of(ex):
    assert ex.status == "ok", ex.error_lines()
    return next(d["data"] for d in ex.displays if RESULT_MIME in d["data"])


def test_a_cell_on_a_remote_server_shows_the_same_result(kernel, server):
    ex = kernel.execute(f"%segment_config --server {server['url']} --token-file {server['token_file']}")
    assert ex.status == "ok", ex.error_lines()
    code = (
        f"%%segment {GOLDEN_IMAGE} --assistant-prefix '{GOLDEN['assistant_prefix']}' "
        f"--max-new-tokens {GOLDEN['max_new_tokens']} --out first\n{GOLDEN['prompt']}"
    )
    ex = kernel.execute(code)
    data = result_of(ex)
    types = [m["msg_type"] for m in ex.messages]
    assert types.index("stream") < types.index("clear_output") < types.index("display_data"), "streamed, then shown"
    payload = data[RESULT_MIME]
    assert payload["outputIds"] == GOLDEN["output_ids"]
    assert [m["rle"]["size"] for m in payload["masks"]] == [m["rle"]["size"] for m in GOLDEN["masks"]]
    assert payload["image"]["data"] and data["image/png"], "the image and the overlay, as from a local host"
    assert kernel.value("__import__('reason_segment.magic').magic.session().host") is None, "no host process started"


def test_a_followup_sends_only_the_sha256(kernel, server):
    ex = kernel.execute("%segment_followup Now segment only the spoon.")
    payload = result_of(ex)[RESULT_MIME]
    assert payload["timings"]["cacheHit"] is True
    assert len(payload["history"]) == 1
    assert kernel.value("__import__('reason_segment.magic').magic.session().remote.images_sent") == 1


def test_the_server_refines_its_results_from_python_and_from_the_renderers_comm(kernel, server):
    # `first` is the first test's result, made on the server; the server's refine extension refines it, no host.
    g = next(r for r in refine_goldens() if r["case"] == GOLDEN["name"] and r["points"] and r["box"])
    i = g["mask_index"]
    area = kernel.value(
        f"int(first.refine(mask={i}, points={g['points']}, labels={g['labels']}, box={g['box']}).sum())"
    )
    mask = decode(kernel.value(f"first.rles[{i}]"))
    assert area == mask.sum() and iou(mask, decode(g["mask"]["rle"])) >= 0.999
    assert kernel.value(f"first.refined[{i}]")["box"] == g["box"]
    # The JupyterLab renderer's way: a comm to the kernel, which asks the server.
    rid = kernel.value("first.result_id")
    prompt = {"points": g["points"], "labels": g["labels"], "box": g["box"]}
    answer = ask(kernel, {"op": "refine", "resultId": rid, "maskIndex": i, "prompt": prompt})
    assert "error" not in answer, answer
    assert iou(decode(answer["mask"]["rle"]), decode(g["mask"]["rle"])) >= 0.999
    assert kernel.value("__import__('reason_segment.magic').magic.session().host") is None, "no host process started"
    # A point outside the image: the server's refusal, one line.
    outside = {"points": [[1e6, 3]], "labels": [1]}
    answer = ask(kernel, {"op": "refine", "resultId": rid, "maskIndex": i, "prompt": outside})
    assert "refused the request (400)" in answer["error"] and "\n" not in answer["error"], answer


def test_errors_are_one_line(kernel, server):
    wrong = server["tmp"] / "wrong"
    wrong.write_text("0" * 64 + "\n")
    assert kernel.execute(f"%segment_config --token-file {wrong}").status == "ok"
    ex = kernel.execute(f"%%segment {GOLDEN_IMAGE} -q\nWhat is here?")
    assert ex.status == "error"
    lines = ex.error_lines()
    assert len(lines) == 1 and "refused the request (401): the bearer token is not valid" in lines[0], lines
    assert kernel.execute("%segment_config --server http://127.0.0.1:9").status == "ok"
    lines = kernel.execute(f"%%segment {GOLDEN_IMAGE} -q\nWhat is here?").error_lines()
    assert len(lines) == 1 and "cannot be reached" in lines[0], lines
    assert kernel.execute("%segment_config --reset").status == "ok"
