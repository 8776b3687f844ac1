"""The ``%%segment`` cell magic and its companions.

    %load_ext reason_segment

    %%segment photos/kitchen.jpg --model ~/bundles/lisa-7b
    Which object here would keep food coldest? Explain why.

    %segment_followup Now segment only its door.

One host process per kernel, started on first use and reused by every cell, stopped when the kernel exits. Errors
show as one line (the host's own message) and leave the magic ready for the next cell; a host that died is started
again by the next cell.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import re
import shlex
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .host import ErrorCode, Host, HostCrashed, HostError, Methods, RpcError, find_server_js
from .remote import RemoteError, RemoteServer, read_token
from .result import SegmentResult

DEVICES = ("cpu", "cuda", "webgpu")


class SegmentError(Exception):
    """An error a cell shows as one line (no traceback): IPython prints what ``_render_traceback_`` returns."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

    def _render_traceback_(self) -> List[str]:
        return [f"\x1b[0;31mReason Segment:\x1b[0m {self}"]


def parse_argstring(magic_func, line: str):
    """Like IPython's parse_argstring, but quotes group words and are removed (`--x 'a b'` gives `a b`), so
    paths with spaces and texts work as in a shell."""
    try:
        if os.name == "nt":  # keep backslashes of Windows paths
            argv = [
                a[1:-1] if len(a) > 1 and a[0] == a[-1] and a[0] in "'\"" else a for a in shlex.split(line, posix=False)
            ]
        else:
            argv = shlex.split(line, posix=True)
    except ValueError as e:
        raise SegmentError(f"Cannot read the options ({e}): check the quotes.") from None
    return magic_func.parser.parse_args(argv)


class _Session:
    """State shared by the magics of one kernel: settings, the host process, the last conversation."""

    def __init__(self) -> None:
        self.config: Dict[str, Any] = {
            "host": None,
            "node": None,
            "model": None,
            "device": None,
            "max_new_tokens": None,
            "server": None,
            "token_file": None,
        }
        self.host: Optional[Host] = None
        self.remote: Optional[RemoteServer] = None
        self.lock = threading.Lock()
        self.last: Optional[Dict[str, Any]] = None  # image path, history, model, device, result
        # Results of this kernel by the host's resultId, most recent last: what the JupyterLab renderer refines.
        self.results: collections.OrderedDict[str, SegmentResult] = collections.OrderedDict()
        # The server that gave a result, for results of a remote server: it refines them, not the host.
        self.made_by: Dict[str, RemoteServer] = {}

    # ---- settings --------------------------------------------------------------------------------------------------
    def model(self, override: Optional[str]) -> str:
        m = override or self.config["model"] or os.environ.get("REASON_SEGMENT_MODEL")
        if not m:
            raise SegmentError(
                "No model is configured: pass --model BUNDLE_FOLDER, run %segment_config --model "
                "BUNDLE_FOLDER, or set REASON_SEGMENT_MODEL (the extension sets it from its settings)."
            )
        path = os.path.abspath(os.path.expanduser(m))
        if not os.path.isdir(path):
            raise SegmentError(
                f"The model bundle folder {m} does not exist: pass the folder that holds lisa.manifest.json."
            )
        return path

    def device(self, override: Optional[str]) -> str:
        d = (override or self.config["device"] or os.environ.get("REASON_SEGMENT_DEVICE") or "cpu").lower()
        if d not in DEVICES:
            raise SegmentError(f"Unknown device {d!r}: use one of {', '.join(DEVICES)}.")
        return d

    # ---- host ------------------------------------------------------------------------------------------------------
    def ensure_host(self, explicit_host: Optional[str] = None, say=None) -> Host:
        server_js = find_server_js(explicit_host or self.config["host"])
        if server_js is None:
            raise SegmentError(
                "The Reason Segment host was not found: set REASON_SEGMENT_HOST to the host's "
                "server.js (out/src/host/server.js), or run %segment_config --host PATH."
            )
        node = self.config["node"] or os.environ.get("REASON_SEGMENT_NODE") or "node"
        h = self.host
        if h is not None and h.alive and h.server_js == server_js and h.node == node:
            return h
        if h is not None:
            h.close(timeout=3)
            self.host = None
        if say:
            say("Starting the Reason Segment host\u2026")
        h = Host(server_js, node=node, cwd=os.getcwd())
        try:
            h.start()
        except HostError as e:
            h.kill()
            raise SegmentError(str(e)) from None
        self.host = h
        return h

    def ensure_model(self, h: Host, bundle: str, device: str, say=None) -> None:
        if h.loaded == (bundle, device):
            return
        if say:
            say(f"Loading {os.path.basename(bundle)} on {device}\u2026")
        h.loaded = None
        h.request(Methods.loadModel, {"bundle": bundle, "device": device})
        h.loaded = (bundle, device)

    def server(self) -> Optional[RemoteServer]:
        """The remote server when one is configured (%segment_config --server, or $REASON_SEGMENT_SERVER), else None."""
        url = self.config["server"] or os.environ.get("REASON_SEGMENT_SERVER")
        if not url:
            return None
        token_file = self.config["token_file"] or os.environ.get("REASON_SEGMENT_TOKEN_FILE")
        try:
            token = read_token(token_file) if token_file else os.environ.get("REASON_SEGMENT_TOKEN")
        except RemoteError as e:
            raise SegmentError(str(e)) from None
        r = self.remote
        if r is None or r.url != url.rstrip("/") or r.token != token:
            r = self.remote = RemoteServer(url, token)
        return r

    def run_remote(
        self,
        r: RemoteServer,
        path: str,
        prompt: str,
        history: List[Dict[str, str]],
        max_new_tokens: Optional[int],
        assistant_prefix: Optional[str],
        stream: bool,
    ) -> SegmentResult:

        printed = [False]

        def on_text(text: str) -> None:
            if stream:
                sys.stdout.write(text)
                sys.stdout.flush()
                printed[0] = True

        with self.lock:
            try:
                payload = r.segment(
                    path,
                    prompt,
                    history,
                    assistant_prefix=assistant_prefix,
                    on_text=on_text,
                    max_new_tokens=max_new_tokens or self.config["max_new_tokens"],
                )
            except RemoteError as e:
                if printed[0]:
                    print(flush=True)
                raise SegmentError(str(e)) from None
        return self._finish(payload, path, prompt, history, assistant_prefix, printed[0], None, None, r)

    def refine(self, result: SegmentResult, mask_index: int, prompt: Dict[str, Any]) -> Dict[str, Any]:
        """The host's refined mask for mask ``mask_index`` of ``result`` (reasonSegment/refine); the host (or the server)
        must be the one that made it, so a stopped or restarted host says to run the cell again."""
        remote = self.made_by.get(result.result_id or "")
        if remote is not None:
            with self.lock:
                try:
                    return remote.refine(result.result_id, mask_index, prompt)
                except RemoteError as e:
                    raise SegmentError(str(e)) from None
        h = self.host
        if h is None or not h.alive:
            raise SegmentError(
                "The host that made this result has stopped: run its cell again, then refine the new result."
            )
        if not result.result_id:
            raise SegmentError("This result has no masks to refine.")
        with self.lock:
            try:
                answer = h.request(
                    Methods.refine,
                    {"resultId": result.result_id, "maskIndex": int(mask_index), "prompt": prompt},
                    timeout=120,
                )
            except HostError as e:
                raise SegmentError(str(e)) from None
        return answer["mask"]

    def stop(self) -> None:
        h, self.host = self.host, None
        if h is not None:
            h.close(timeout=5)

    # ---- one turn ------------------------------------------------------------------------------------------------
    def run(
        self,
        image: str,
        prompt: str,
        history: List[Dict[str, str]],
        *,
        model: Optional[str],
        device: Optional[str],
        max_new_tokens: Optional[int],
        host_path: Optional[str],
        assistant_prefix: Optional[str],
        stream: bool,
    ) -> SegmentResult:

        if not prompt.strip():
            raise SegmentError("The instruction is empty: write it in the cell body, below the %%segment line.")
        remote = self.server()
        if remote is not None:
            return self.run_remote(
                remote,
                os.path.abspath(os.path.expanduser(image)),
                prompt,
                history,
                max_new_tokens,
                assistant_prefix,
                stream,
            )
        bundle = self.model(model)
        dev = self.device(device)
        path = os.path.abspath(os.path.expanduser(image))
        printed = [False]

        def say(line: str) -> None:
            if stream:
                print(line, flush=True)
                printed[0] = True

        with self.lock:
            h = self.ensure_host(host_path, say)
            request_id = f"cell-{uuid.uuid4().hex[:12]}"
            streamed: List[str] = []
            last_flush = [0.0]

            def on_notification(method: str, params: Dict[str, Any]) -> None:
                if method != Methods.textDelta or not stream:
                    return
                text = params.get("text", "")
                if not text:
                    return
                streamed.append(text)
                sys.stdout.write(text)
                printed[0] = True
                now = time.monotonic()
                if now - last_flush[0] > 0.05:
                    sys.stdout.flush()
                    last_flush[0] = now

            params: Dict[str, Any] = {
                "requestId": request_id,
                "image": {"path": path},
                "prompt": prompt,
                "history": history,
                "includeOverlay": True,
                "includeImage": True,
            }
            mnt = max_new_tokens or self.config["max_new_tokens"]
            if mnt:
                params["maxNewTokens"] = int(mnt)
            if assistant_prefix:
                params["assistantPrefix"] = assistant_prefix
            try:
                self.ensure_model(h, bundle, dev, say)
                payload = h.request(Methods.segment, params, request_id=request_id, on_notification=on_notification)
            except RpcError as e:
                sys.stdout.flush()
                if printed[0]:
                    print(flush=True)
                if e.cancelled:
                    raise SegmentError(
                        "Cancelled: the model stopped answering; run the cell again for a result."
                    ) from None
                raise SegmentError(str(e)) from None
            except HostCrashed as e:
                sys.stdout.flush()
                if printed[0]:
                    print(flush=True)
                self.host = None
                raise SegmentError(str(e)) from None
            except HostError as e:
                raise SegmentError(str(e)) from None
            finally:
                sys.stdout.flush()
        return self._finish(payload, path, prompt, history, assistant_prefix, printed[0], bundle, dev)

    def _finish(
        self, payload, path, prompt, history, assistant_prefix, printed, model, device, remote=None
    ) -> SegmentResult:
        """The result of a turn, remembered as the conversation a follow-up continues (and, for a remote server's
        result, which server refines it)."""
        from IPython.display import clear_output

        if printed:
            clear_output(wait=True)
        result = SegmentResult(payload, image_path=path, refiner=self.refine if model or remote else None)
        if result.result_id:
            self.results[result.result_id] = result
            if remote is not None:
                self.made_by[result.result_id] = remote
            while len(self.results) > MAX_RESULTS:
                gone, _ = self.results.popitem(last=False)
                self.made_by.pop(gone, None)
        said = f"{assistant_prefix} {result.answer}".strip() if assistant_prefix else result.answer
        self.last = {
            "image": path,
            "history": list(history) + [{"user": prompt, "assistant": said}],
            "model": model,
            "device": device,
            "result": result,
        }
        return result


MAX_RESULTS = 256  # as many as the host remembers for refining (src/host/refine.ts)
COMM_TARGET = "reason_segment.refine"

_SESSION = _Session()


def handle_comm_request(data: Dict[str, Any]) -> Dict[str, Any]:
    """What the JupyterLab renderer asks through its comm (one request per comm, in the open message):

    - ``{"op": "refine", "resultId", "maskIndex", "prompt"}``: the host refines the mask, which the kernel's result
      object takes; answers ``{"mask"}``.
    - ``{"op": "set", "resultId", "maskIndex", "mask"}``: the cell's output now shows this mask (after a refine,
      an undo or a redo); the kernel's result object takes it too. Answers ``{"bundle"}``, the output's other types
      (text, markdown) as they read now, which the renderer writes into the output so a saved notebook has them.

    Errors answer ``{"error": one line}``."""
    try:
        op = data.get("op")
        result = _SESSION.results.get(str(data.get("resultId")))
        if result is None:
            raise SegmentError(
                "This result was not made in this kernel session (the kernel restarted, or the notebook was "
                "reopened): run its cell again, then refine."
            )
        index = data.get("maskIndex")
        if not isinstance(index, int) or not 0 <= index < len(result):
            raise SegmentError(f"maskIndex {index!r}: the result has {len(result)} mask(s).")
        if op == "refine":
            mask = _SESSION.refine(result, index, data.get("prompt") or {})
            result.set_mask(index, mask)
            return {"mask": mask}
        if op == "set":
            try:
                result.set_mask(index, data.get("mask"))
            except ValueError as e:
                raise SegmentError(str(e)) from None
            return {"bundle": result.fallback_bundle()}
        raise SegmentError(f"unknown request {op!r}: expected 'refine' or 'set'.")
    except SegmentError as e:
        return {"error": str(e)}


def _on_comm_open(comm: Any, msg: Dict[str, Any]) -> None:
    comm.send(handle_comm_request(msg["content"]["data"] or {}))
    comm.close()


def register_comm_target(ipython: Any) -> None:
    """Lets the JupyterLab renderer refine masks through the kernel: registers the comm target in an ipykernel (a
    terminal IPython has no frontend to ask)."""
    manager = getattr(getattr(ipython, "kernel", None), "comm_manager", None)
    if manager is not None:
        manager.register_target(COMM_TARGET, _on_comm_open)


def session() -> _Session:
    """The kernel's magic state (host process, settings, last conversation)."""
    return _SESSION


def _atexit() -> None:
    try:
        _SESSION.stop()
    except Exception:
        pass


atexit.register(_atexit)


_FOLLOWUP_LINE = re.compile(r"^(\s*)%segment_followup\s+(.*\?)\s*$")


def keep_question_marks(lines: List[str]) -> List[str]:
    """An input transformer: IPython reads a line ending in `?` as a help request, so `%segment_followup Which is
    larger?` would show help; such a line becomes a direct call of the magic with its text. Cell magics are left as
    they are (their body is text, not lines to transform)."""
    if lines and lines[0].lstrip().startswith("%%"):
        return lines
    out = []
    for line in lines:
        m = _FOLLOWUP_LINE.match(line)
        if m:
            end = "\n" if line.endswith("\n") else ""
            line = f"{m.group(1)}get_ipython().run_line_magic('segment_followup', {m.group(2)!r}){end}"
        out.append(line)
    return out


@magics_class
class SegmentMagics(Magics):
    def __init__(self, shell=None):
        super().__init__(shell)
        if shell is not None and keep_question_marks not in shell.input_transformers_cleanup:
            shell.input_transformers_cleanup.append(keep_question_marks)

    def _publish(self, result: SegmentResult, out: Optional[str]) -> SegmentResult:
        from IPython.display import display

        display(result)
        ns = self.shell.user_ns
        ns["_segment"] = result
        if out:
            if not out.isidentifier():
                raise SegmentError(f"--out needs a Python name, not {out!r}.")
            ns[out] = result
        # The result becomes `_` (and Out[n]) as if the cell had returned it, without showing it a second time.
        try:
            self.shell.displayhook.update_user_ns(result)
        except Exception:
            pass
        return result

    @magic_arguments()
    @argument("image", help="image file (PNG, JPEG, WebP, GIF, TIFF, BMP) on the kernel's machine")
    @argument(
        "--model", "-m", default=None, help="model bundle folder (default: %%segment_config or $REASON_SEGMENT_MODEL)"
    )
    @argument(
        "--device",
        "-d",
        default=None,
        choices=DEVICES,
        help="cpu, cuda or webgpu (default: $REASON_SEGMENT_DEVICE or cpu)",
    )
    @argument("--max-new-tokens", "-n", type=int, default=None, help="longest answer in tokens (host default 512)")
    @argument("--out", "-o", default=None, help="also store the result in this variable")
    @argument("--host", default=None, help="path of the host's server.js (default: $REASON_SEGMENT_HOST)")
    @argument("--quiet", "-q", action="store_true", help="do not stream the answer while it is generated")
    @argument(
        "--assistant-prefix",
        default=None,
        help="text the answer starts with, e.g. 'Sure, [SEG].' (steers the model; [SEG]s in it yield masks)",
    )
    @cell_magic
    def segment(self, line: str, cell: str):
        """Segment IMAGE following the instruction in the cell body; shows the answer and masks and returns a
        SegmentResult (also in `_`, `_segment` and --out NAME)."""
        args = parse_argstring(self.segment, line)
        result = _SESSION.run(
            args.image,
            cell.strip(),
            [],
            model=args.model,
            device=args.device,
            max_new_tokens=args.max_new_tokens,
            host_path=args.host,
            assistant_prefix=args.assistant_prefix,
            stream=not args.quiet,
        )
        self._publish(result, args.out)

    @magic_arguments()
    @argument("--max-new-tokens", "-n", type=int, default=None, help="longest answer in tokens")
    @argument("--out", "-o", default=None, help="also store the result in this variable")
    @argument("--quiet", "-q", action="store_true", help="do not stream the answer")
    @argument("--assistant-prefix", default=None, help="text the answer starts with (as for %%%%segment)")
    @line_cell_magic
    def segment_followup(self, line: str, cell: Optional[str] = None):
        """Continue the conversation on the last %%segment image; the earlier turns are re-fed and the host's
        embedding cache skips both image encoders. Line form: `%segment_followup TEXT`; cell form: options on the
        %%segment_followup line, the text in the body."""
        if cell is None:
            text, opts = line, argparse.Namespace(max_new_tokens=None, out=None, quiet=False, assistant_prefix=None)
        else:
            text, opts = cell, parse_argstring(self.segment_followup, line)
        last = _SESSION.last
        if last is None:
            raise SegmentError("There is no conversation to continue: run a %%segment cell first.")
        result = _SESSION.run(
            last["image"],
            text.strip(),
            last["history"],
            model=last["model"],
            device=last["device"],
            max_new_tokens=opts.max_new_tokens,
            host_path=None,
            assistant_prefix=opts.assistant_prefix,
            stream=not opts.quiet,
        )
        self._publish(result, opts.out)

    @magic_arguments()
    @argument("--host", default=None, help="path of the host's server.js")
    @argument("--node", default=None, help="node binary")
    @argument("--model", "-m", default=None, help="default model bundle folder")
    @argument("--device", "-d", default=None, choices=DEVICES, help="default device")
    @argument("--max-new-tokens", "-n", type=int, default=None, help="default longest answer in tokens")
    @argument(
        "--server",
        default=None,
        help="URL of a `reason-segment serve` to use instead of a host process "
        "(default: $REASON_SEGMENT_SERVER); '' goes back to the local host",
    )
    @argument(
        "--token-file",
        default=None,
        help="file whose first line is the server's bearer token (default: "
        "$REASON_SEGMENT_TOKEN_FILE, or the token in $REASON_SEGMENT_TOKEN)",
    )
    @argument("--reset", action="store_true", help="forget every setting made here (environment variables apply)")
    @line_magic
    def segment_config(self, line: str):
        """Show or change the magic's settings for this kernel. With no options, shows them."""
        args = parse_argstring(self.segment_config, line)
        cfg = _SESSION.config
        if args.reset:
            for k in cfg:
                cfg[k] = None
        for key in ("host", "node", "model", "device", "max_new_tokens", "server", "token_file"):
            v = getattr(args, key)
            if v is not None and key in ("host", "model", "token_file") and v:
                cfg[key] = os.path.abspath(os.path.expanduser(v))
            elif v is not None:
                cfg[key] = v or None  # --server '' goes back to the local host
        h = _SESSION.host
        shown = {
            "host": find_server_js(cfg["host"]),
            "node": cfg["node"] or os.environ.get("REASON_SEGMENT_NODE") or "node",
            "model": cfg["model"] or os.environ.get("REASON_SEGMENT_MODEL"),
            "device": cfg["device"] or os.environ.get("REASON_SEGMENT_DEVICE") or "cpu",
            "max_new_tokens": cfg["max_new_tokens"],
            "host_pid": h.pid if h is not None and h.alive else None,
            "server": cfg["server"] or os.environ.get("REASON_SEGMENT_SERVER"),
        }
        if not line.strip():
            for k, v in shown.items():
                print(f"{k:>15}: {v}")
            return None
        return None

    @line_magic
    def segment_status(self, line: str):
        """The host's status (state, model, counters such as visionEncoderRuns), or None when no host runs."""
        h = _SESSION.host
        if h is None or not h.alive:
            return None
        try:
            return h.request(Methods.status, None, timeout=30)
        except HostError as e:
            raise SegmentError(str(e)) from None

    @line_magic
    def segment_log(self, line: str):
        """Print the host's last log lines (its stderr), e.g. `%segment_log 50`."""
        h = _SESSION.host
        if h is None:
            print("No Reason Segment host has run in this kernel yet.")
            return
        n = int(line.strip() or 20)
        for ln in list(h.stderr_lines)[-n:]:
            print(ln)

    @line_magic
    def segment_stop(self, line: str):
        """Stop the host (frees the model's memory); the next cell starts it again."""
        _SESSION.stop()


__all__ = ["SegmentMagics", "SegmentError", "session", "ErrorCode", "COMM_TARGET", "handle_comm_request"]
