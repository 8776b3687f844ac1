"""A real IPython kernel (ipykernel started by jupyter_client's KernelManager with this venv's python) running the
``reason_segment`` extension from this checkout against the real inference host (node out/src/host/server.js)."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pycocotools.mask as cocomask
import pytest

KERNEL_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(KERNEL_PKG))
SERVER_JS = os.path.join(REPO, "out", "src", "host", "server.js")
BUNDLE = os.path.join(REPO, "test", "fixtures", "bundles", "tiny-7b")
HOSTILE = os.path.join(REPO, "test", "fixtures", "images")
RESULT_MIME = "application/vnd.reason-segment.result+json"


def goldens(bundle: str = BUNDLE) -> List[Dict[str, Any]]:
    with open(os.path.join(bundle, "goldens.json"), encoding="utf-8") as f:
        return json.load(f)["cases"]


def kernel_env(**extra: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASON_SEGMENT_")}
    env["PYTHONPATH"] = KERNEL_PKG + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["REASON_SEGMENT_HOST"] = SERVER_JS
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an unreaped zombie runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


@dataclass
class Execution:
    status: str
    messages: List[Dict[str, Any]] = field(default_factory=list)

    def of(self, *types: str) -> List[Dict[str, Any]]:
        return [m["content"] for m in self.messages if m["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(c["text"] for c in self.of("stream") if c["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(c["text"] for c in self.of("stream") if c["name"] == "stderr")

    @property
    def errors(self) -> List[Dict[str, Any]]:
        return self.of("error")

    @property
    def displays(self) -> List[Dict[str, Any]]:
        return self.of("display_data")

    def error_lines(self) -> List[str]:
        return [line for e in self.errors for line in e["traceback"]]


class Kernel:
    def __init__(self, env: Dict[str, str]):
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=REPO)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(
        self, code: str, timeout: float = 120, on_msg: Optional[Callable[[Dict[str, Any]], None]] = None
    ) -> Execution:
        msg_id = self.kc.execute(code, store_history=True)
        ex = Execution(status="?")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 5))
            except Exception:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if on_msg is not None:
                on_msg(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] != "status":
                ex.messages.append(msg)
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=30)
        ex.status = reply["content"]["status"]
        return ex

    def value(self, expr: str) -> Any:
        """Evaluates a Python expression in the kernel and returns it through JSON."""
        ex = self.execute(f"import json as _j; print(_j.dumps({expr}))")
        assert ex.status == "ok", ex.error_lines()
        return json.loads(ex.stdout.strip().splitlines()[-1])

    def status(self) -> Dict[str, Any]:
        """The host's status through the %segment_status magic."""
        return self.value("get_ipython().run_line_magic('segment_status', '')")

    def host_pid(self) -> Optional[int]:
        return self.value(
            "(lambda h: h.pid if h is not None and h.alive else None)"
            "(__import__('reason_segment.magic').magic.session().host)"
        )

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=False)


@pytest.fixture(scope="session", autouse=True)
def built_host():
    if not os.path.isfile(SERVER_JS):
        pytest.fail(f"{SERVER_JS} is missing: build the host first (npx tsc -p .)", pytrace=False)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel(kernel_env())
    ex = k.execute("%load_ext reason_segment")
    assert ex.status == "ok", ex.error_lines()
    yield k
    k.shutdown()


def refine_goldens(bundle: str = BUNDLE) -> List[Dict[str, Any]]:
    with open(os.path.join(bundle, "goldens.json"), encoding="utf-8") as f:
        return json.load(f)["refine"]


def decode(rle: Dict[str, Any]) -> np.ndarray:
    return cocomask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def ask(kernel: Kernel, data: Dict[str, Any]) -> Dict[str, Any]:
    """Opens a comm to the magic's target as the renderer does (the request in the open message) and returns the
    kernel's answer, or {"closed": True} when the kernel closed the comm without one."""
    from reason_segment.magic import COMM_TARGET

    kc = kernel.kc
    msg = kc.session.msg("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": COMM_TARGET, "data": data})
    kc.shell_channel.send(msg)
    while True:
        m = kc.get_iopub_msg(timeout=120)
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if m["msg_type"] == "comm_msg":
            return m["content"]["data"]
        if m["msg_type"] == "comm_close":
            return {"closed": True}
