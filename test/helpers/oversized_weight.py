"""A copy of a bundle whose vision_encoder graph also reads one float32 weight of BYTES bytes (all zeros, so its
outputs do not change): a weight over a WebGPU adapter's maxBufferSize, for the 'adapter too small' fallback test.

The weight is a sparse file: it costs no disk, and ONNX Runtime reads it as zeros. The graph gathers one element of it
at an index computed from its input (0), so the weight stays a run-time input of a WebGPU kernel (a constant index
would let ONNX Runtime fold it away at load).

    models/export/venv run test/helpers/oversized_weight.py SRC_BUNDLE OUT_DIR BYTES
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main(src: Path, out: Path, nbytes: int) -> None:
    shutil.copytree(src, out)
    manifest = json.loads((out / "lisa.manifest.json").read_text())
    rel = manifest["graphs"]["vision_encoder"]["file"]
    graph_file = out / rel
    data = graph_file.with_name("oversized.bin")
    with data.open("wb") as f:
        f.truncate(nbytes)
    model = onnx.load(str(graph_file))
    g = model.graph
    w = TensorProto(name="oversized", data_type=TensorProto.FLOAT, dims=[nbytes // 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", data.name), ("offset", "0"), ("length", str(nbytes))):
        e = w.external_data.add()
        e.key, e.value = k, v
    g.initializer.append(w)
    zero = helper.make_tensor("oversized_zero", TensorProto.FLOAT, [], [0.0])
    g.initializer.append(zero)
    x, y = g.input[0].name, g.output[0].name
    inner = y + "_before_oversized"
    for node in g.node:  # the old output becomes an inner value
        node.output[:] = [inner if o == y else o for o in node.output]
    g.node.extend(
        [
            helper.make_node("ReduceMax", [x], ["ov_max"], keepdims=0),
            helper.make_node("Mul", ["ov_max", "oversized_zero"], ["ov_zero"]),
            helper.make_node("Cast", ["ov_zero"], ["ov_index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["oversized", "ov_index"], ["ov_value"], axis=0),
            helper.make_node("Add", [inner, "ov_value"], [y]),
        ]
    )
    onnx.save_model(model, str(graph_file))
    for name in (rel, f"{Path(rel).parent}/{data.name}"):
        p = out / name
        manifest["files"][name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (out / "lisa.manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
