"""The inference host as a child process of the kernel, spoken to in JSON-RPC 2.0 with LSP framing on its stdio.

Stdlib only. The wire format and methods are those of src/protocol/rpc.ts:
``Content-Length: N\\r\\n\\r\\n<json>``; ``initialize`` first, then ``reasonSegment/*`` requests; the host streams
``reasonSegment/textDelta`` notifications carrying the client-chosen ``requestId``; ``$/cancelRequest`` cancels.

The host exits by itself when its stdin closes (the kernel died) or when the process id sent in ``initialize`` is
gone, so a killed kernel leaves no host behind; a normal shutdown sends ``reasonSegment/shutdown`` first.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from typing import Any, Callable, Deque, Dict, Optional

from .protocol import ErrorCode, Methods

__all__ = ["HostError", "RpcError", "HostCrashed", "HostNotFound", "Host", "find_server_js", "Methods", "ErrorCode"]


class HostError(Exception):
    """Anything that went wrong talking to the host; ``str(e)`` is one readable line."""


class RpcError(HostError):
    """An error answer of the host: its message is already one line ("<title>: <detail>. <hint>")."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code = code
        self.data = data

    @property
    def cancelled(self) -> bool:
        return self.code in (ErrorCode.Cancelled, ErrorCode.LspRequestCancelled)


class HostNotFound(HostError):
    pass


class HostCrashed(HostError):
    pass


def find_server_js(explicit: Optional[str] = None) -> Optional[str]:
    """The host's server.js: an explicit path, else $REASON_SEGMENT_HOST, else the repository's build output
    (``out/src/host/server.js``) above this package when it runs from a checkout or the extension's folder."""
    for cand in (explicit, os.environ.get("REASON_SEGMENT_HOST")):
        if cand:
            return os.path.abspath(os.path.expanduser(cand))
    here = os.path.dirname(os.path.abspath(__file__))
    d = here
    for _ in range(6):
        d = os.path.dirname(d)
        for rel in (("out", "src", "host", "server.js"),):
            p = os.path.join(d, *rel)
            if os.path.isfile(p):
                return p
    return None


def _stderr_tail(lines: Deque[str], n: int = 3) -> str:
    tail = [ln.strip() for ln in list(lines)[-n:] if ln.strip()]
    return " | ".join(tail)


class Host:
    """One host child process and its JSON-RPC connection. Thread-safe for one request at a time per caller."""

    def __init__(
        self,
        server_js: str,
        node: Optional[str] = None,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ):
        self.server_js = server_js
        self.node = node or os.environ.get("REASON_SEGMENT_NODE") or "node"
        self.cwd = cwd
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.server_info: Dict[str, Any] = {}
        self.capabilities: Dict[str, Any] = {}
        self.stderr_lines: Deque[str] = collections.deque(maxlen=200)
        self.loaded: Optional[tuple] = None  # (bundle, device) loaded in this process
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._pending: Dict[int, queue.Queue] = {}
        self._by_request_id: Dict[str, queue.Queue] = {}
        self._pending_lock = threading.Lock()
        self._closed = threading.Event()

    # ---- life --------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._closed.is_set()

    def start(self, timeout: float = 60.0) -> Host:
        if not os.path.isfile(self.server_js):
            raise HostNotFound(
                f"The Reason Segment host was not found at {self.server_js}: build it (npx tsc -p .) or point "
                "REASON_SEGMENT_HOST or %segment_config --host at out/src/host/server.js."
            )
        node = shutil.which(self.node) or (self.node if os.path.isfile(self.node) else None)
        if not node:
            raise HostNotFound(
                f"Node.js was not found ({self.node!r}): install Node.js 20 or set REASON_SEGMENT_NODE (or "
                "%segment_config --node) to the node binary."
            )
        env = dict(os.environ)
        # KEY=VALUE pairs the VS Code extension asks for, e.g. ELECTRON_RUN_AS_NODE=1 when the "node" it points at is
        # VS Code's own Electron binary.
        for pair in os.environ.get("REASON_SEGMENT_NODE_ENV", "").split():
            key, sep, value = pair.partition("=")
            if sep:
                env[key] = value
        if self.env:
            env.update(self.env)
        try:
            # Own session: a kernel interrupt (SIGINT to the kernel's process group) must not kill the host; the
            # magic turns it into $/cancelRequest instead.
            self.proc = subprocess.Popen(
                [node, self.server_js],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise HostNotFound(f"The Reason Segment host could not be started ({node} {self.server_js}): {e}.") from e
        threading.Thread(target=self._read_stdout, name="reason-segment-host-reader", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="reason-segment-host-stderr", daemon=True).start()
        result = self.request(
            "initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {}}, timeout=timeout
        )
        self.server_info = result.get("serverInfo", {}) if isinstance(result, dict) else {}
        self.capabilities = (result or {}).get("capabilities", {}).get("experimental", {}).get("reasonSegment", {})
        self.notify("initialized", {})
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Ask the host to shut down, then make sure it is gone (closing its stdin, then killing it)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and not self._closed.is_set():
            try:
                self.request(Methods.shutdown, None, timeout=timeout)
            except Exception:
                pass
        try:
            if proc.stdin:
                proc.stdin.close()
        except Exception:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._closed.set()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # ---- wire ----------------------------------------------------------------------------------------------------
    def _send(self, msg: Dict[str, Any]) -> None:
        body = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        frame = b"Content-Length: %d\r\n\r\n" % len(body) + body
        with self._write_lock:
            if not self.proc or not self.proc.stdin:
                raise HostCrashed("The Reason Segment host is not running.")
            try:
                self.proc.stdin.write(frame)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise HostCrashed(self._crash_message()) from None

    def _read_stdout(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                body = out.read(length)
                if len(body) < length:
                    return
                try:
                    msg = json.loads(body.decode("utf-8"))
                except ValueError:
                    continue
                self._dispatch(msg)
        except Exception:
            return
        finally:
            self._closed.set()
            with self._pending_lock:
                queues = list(self._pending.values())
            for q in queues:
                q.put(("eof", None))

    def _read_stderr(self) -> None:
        try:
            for raw in self.proc.stderr:
                self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        except Exception:
            pass

    def _dispatch(self, msg: Dict[str, Any]) -> None:
        if "method" in msg:
            if "id" in msg:  # a request from the host (none are expected): answer so it never waits
                try:
                    self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
                except HostError:
                    pass
                return
            params = msg.get("params") or {}
            rid = params.get("requestId") if isinstance(params, dict) else None
            with self._pending_lock:
                q = self._by_request_id.get(rid) if rid else None
            if q is not None:
                q.put(("notification", msg))
            return
        mid = msg.get("id")
        with self._pending_lock:
            q = self._pending.get(mid)
        if q is not None:
            q.put(("response", msg))

    def _crash_message(self) -> str:
        code = self.proc.poll() if self.proc else None
        how = (
            f"exit code {code}"
            if code is not None and code >= 0
            else (f"signal {-code}" if code is not None else "its output closed")
        )
        tail = _stderr_tail(self.stderr_lines)
        return (
            f"The Reason Segment host stopped ({how})"
            + (f": {tail}" if tail else "")
            + ". It will be started again by the next cell."
        )

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(
        self,
        method: str,
        params: Any,
        *,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
        on_notification: Optional[Callable[[str, Dict[str, Any]], None]] = None,
    ) -> Any:
        """Send a request and wait for its answer in the calling thread, handing notifications that carry
        ``request_id`` to ``on_notification`` (in this thread, so printing lands in the running cell). A
        KeyboardInterrupt while waiting sends ``$/cancelRequest`` and keeps waiting for the host's answer; a second
        one gives up waiting."""
        if self._closed.is_set() or not self.proc or self.proc.poll() is not None:
            raise HostCrashed(self._crash_message())
        mid = next(self._ids)
        q: queue.Queue = queue.Queue()
        with self._pending_lock:
            self._pending[mid] = q
            if request_id:
                self._by_request_id[request_id] = q
        deadline = time.monotonic() + timeout if timeout else None
        cancelled = False
        try:
            msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": mid, "method": method}
            if params is not None:
                msg["params"] = params
            self._send(msg)
            while True:
                try:
                    try:
                        kind, item = q.get(timeout=0.1)
                    except queue.Empty:
                        if deadline is not None and time.monotonic() > deadline:
                            raise HostError(
                                f"The Reason Segment host did not answer {method} within {timeout:.0f} s."
                            ) from None
                        if self.proc.poll() is not None and self._closed.is_set():
                            raise HostCrashed(self._crash_message()) from None
                        continue
                    if kind == "notification":
                        if on_notification is not None:
                            on_notification(item.get("method", ""), item.get("params") or {})
                        continue
                except KeyboardInterrupt:
                    # A kernel interrupt: ask the host to stop this request and wait for its (Cancelled) answer.
                    if cancelled:
                        raise
                    cancelled = True
                    try:
                        self.notify(Methods.cancel, {"id": mid})
                    except HostError:
                        raise KeyboardInterrupt from None
                    continue
                if kind == "eof":
                    # Let the process finish exiting so the message can name its exit code.
                    try:
                        self.proc.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        pass
                    raise HostCrashed(self._crash_message())
                if "error" in item and item["error"] is not None:
                    err = item["error"]
                    raise RpcError(
                        int(err.get("code", ErrorCode.Internal)),
                        " ".join(str(err.get("message", "")).split()) or "The host reported an error.",
                        err.get("data"),
                    )
                return item.get("result")
        finally:
            with self._pending_lock:
                self._pending.pop(mid, None)
                if request_id:
                    self._by_request_id.pop(request_id, None)
