"""`reason-segment serve` driven by a client nobody here wrote: tritonclient[http] from PyPI (NVIDIA's Open Inference
Protocol v2 client). Health, server and model metadata, and infer with BYTES tensors, in binary (tritonclient's
default) and in JSON, with a bearer token. Needs `npm run build` (it starts out/src/host/cli.js)."""

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "test" / "fixtures" / "bundles" / "tiny-7b"
IMAGES = REPO / "test" / "fixtures" / "images"
TOKEN = hashlib.sha256(b"tritonclient test").hexdigest()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cli = REPO / "out" / "src" / "host" / "cli.js"
    if not cli.exists():
        pytest.fail(f"{cli} is missing: run `npm run build` first")
    tmp = tmp_path_factory.mktemp("serve")
    token_file = tmp / "tokens"
    token_file.write_text(TOKEN + "\n")
    log = open(tmp / "stderr", "w+")
    proc = subprocess.Popen(
        ["node", str(cli), "serve", "--model", str(BUNDLE), "--port", "0", "--token-file", str(token_file)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp)},
    )
    port = None
    deadline = time.time() + 60
    while port is None:
        log.seek(0)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v2", log.read())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None or time.time() > deadline:
            log.seek(0)
            proc.kill()
            pytest.fail(f"the server did not start: {log.read()}")
        else:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(30) == 0
    log.close()


@pytest.fixture()
def client(server):
    c = httpclient.InferenceServerClient(url=server)
    yield c
    c.close()


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("reason-segment", headers=AUTH)
    meta = client.get_server_metadata(headers=AUTH)
    assert meta["name"] == "reason-segment"
    assert "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("reason-segment", headers=AUTH)
    assert [(t["name"], t["datatype"]) for t in model["inputs"]][:2] == [("IMAGE", "BYTES"), ("PROMPT", "BYTES")]
    assert [t["name"] for t in model["outputs"]] == ["TEXT", "RESULT"]


def test_token_is_required(client):
    with pytest.raises(InferenceServerException, match="Bearer"):
        client.get_server_metadata()
    with pytest.raises(InferenceServerException, match="not valid"):
        client.get_model_metadata("reason-segment", headers={"Authorization": "Bearer " + "0" * 64})


def bytes_input(name, value, binary):
    t = httpclient.InferInput(name, [1], "BYTES")
    t.set_data_from_numpy(np.array([value], dtype=np.object_), binary_data=binary)
    return t


def infer(client, image, prompt, binary_text, binary_outputs, **extra):
    inputs = [bytes_input("IMAGE", image, True), bytes_input("PROMPT", prompt.encode(), binary_text)]
    for name, value in extra.items():
        if isinstance(value, int):
            t = httpclient.InferInput(name, [1], "INT32")
            t.set_data_from_numpy(np.array([value], dtype=np.int32), binary_data=binary_text)
        else:
            t = bytes_input(name, value.encode(), binary_text)
        inputs.append(t)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_outputs) for n in ("TEXT", "RESULT")]
    return client.infer("reason-segment", inputs, outputs=outputs, headers=AUTH, request_id="py-1")


def as_text(v):
    return v.decode() if isinstance(v, bytes) else v


def test_infer_bytes_tensors_binary_and_json(client):
    goldens = json.loads((BUNDLE / "goldens.json").read_text())["cases"]
    case = next(c for c in goldens if len(c["masks"]) == 2)
    image = (BUNDLE / case["image"]).read_bytes()
    answers = []
    for binary in (True, False):
        res = infer(
            client,
            image,
            case["prompt"],
            binary,
            binary,
            ASSISTANT_PREFIX=case["assistant_prefix"],
            MAX_NEW_TOKENS=case["max_new_tokens"],
        )
        assert res.get_response()["id"] == "py-1"
        text = as_text(res.as_numpy("TEXT")[0])
        result = json.loads(as_text(res.as_numpy("RESULT")[0]))
        assert result["outputIds"] == case["output_ids"], "the reference's tokens"
        assert text == result["answer"]
        assert len(result["masks"]) == 2
        assert [m["rle"]["size"] for m in result["masks"]] == [m["rle"]["size"] for m in case["masks"]]
        assert result["image"]["sha256"] == hashlib.sha256(image).hexdigest()
        answers.append(result)
    # The same masks; SAM's predicted IoU only within float noise (the second request reuses the first one's KV rows,
    # which sums in another order: 7e-9 apart here).
    first, second = ([{**m, "score": None} for m in r["masks"]] for r in answers)
    assert first == second
    for a, b in zip(*(r["masks"] for r in answers)):
        assert abs(a["score"] - b["score"]) <= 1e-4
    assert answers[1]["timings"]["cacheHit"], "the second request found the image in the shared embedding cache"


def test_errors_come_back_as_exceptions_with_the_message(client):
    image = (IMAGES / "not-an-image.png").read_bytes()
    with pytest.raises(InferenceServerException) as err:
        infer(client, image, "What is here?", True, False)
    assert str(err.value.status()) == "400"
    assert "image" in err.value.message().lower()
    with pytest.raises(InferenceServerException, match="unknown input"):
        client.infer(
            "reason-segment", [bytes_input("PROMPT", b"x", True), bytes_input("COLOUR", b"red", True)], headers=AUTH
        )
