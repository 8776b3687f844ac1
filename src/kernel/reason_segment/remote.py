"""A remote ``reason-segment serve`` (Open Inference Protocol v2) in place of a host process: ``%segment_config
--server URL``. Stdlib only. Each turn is one ``generate_stream`` request (Server-Sent Events: the answer streams as
it is generated, the last event carries the result). An image goes to the server once; follow-ups on it send only its
sha256, and the image again if the server answers that it no longer holds it (404). A mask of a result is refined
with one request of the server's refine extension.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from typing import Any, Callable

__all__ = ["RemoteError", "RemoteServer", "read_token"]

MODEL = "reason-segment"


class RemoteError(Exception):
    """The server refused or could not be reached; ``str(e)`` is one readable line."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def read_token(path: str) -> str:
    """The first token of a token file (one a line, # comments), as `reason-segment serve --token-file` reads it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError as e:
        raise RemoteError(f"The token file {path} cannot be read ({e.strerror}).") from None
    tokens = [ln for ln in lines if ln and not ln.startswith("#")]
    if not tokens:
        raise RemoteError(f"The token file {path} holds no token: write the server's bearer token in it.")
    return tokens[0]


class RemoteServer:
    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.sent: set[str] = set()
        #: Images sent to the server (not counting turns that referred to one by its sha256).
        self.images_sent = 0

    def segment(
        self,
        image_path: str,
        prompt: str,
        history: list[dict[str, str]],
        *,
        max_new_tokens: int | None = None,
        assistant_prefix: str | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One turn; returns the result document (with the overlay and the image, as the local host gives them)."""
        try:
            with open(image_path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise RemoteError(f"The image {image_path} cannot be read ({e.strerror}).") from None
        sha = hashlib.sha256(data).hexdigest()
        body: dict[str, Any] = {"text_input": prompt, "parameters": {"include_overlay": True, "include_image": True}}
        if history:
            body["HISTORY"] = json.dumps(history)
        if max_new_tokens:
            body["MAX_NEW_TOKENS"] = int(max_new_tokens)
        if assistant_prefix:
            body["ASSISTANT_PREFIX"] = assistant_prefix
        if sha in self.sent:
            try:
                return self._stream({**body, "IMAGE_SHA256": sha}, on_text)
            except RemoteError as e:
                if e.status != 404:
                    raise
        result = self._stream({**body, "IMAGE": base64.b64encode(data).decode("ascii")}, on_text)
        self.sent.add(sha)
        self.images_sent += 1
        return result

    def refine(self, result_id: str, mask_index: int, prompt: dict[str, Any]) -> dict[str, Any]:
        """Mask ``mask_index`` of a result this server gave, again with points and a box; the server must still hold
        the result (a 404 says it does not: run the cell again)."""
        params = {"resultId": result_id, "maskIndex": int(mask_index), "prompt": prompt}
        with self._post("refine", params, "application/json") as resp:
            return json.loads(resp.read().decode("utf-8"))["mask"]

    def _post(self, action: str, body: dict[str, Any], accept: str):
        headers = {"Content-Type": "application/json", "Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            f"{self.url}/v2/models/{MODEL}/{action}",
            data=json.dumps(body).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise RemoteError(
                f"The server {self.url} refused the request ({e.code}): {_error_of(e.read())}", e.code
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RemoteError(
                f"The server {self.url} cannot be reached ({reason}): check %segment_config --server."
            ) from None

    def _stream(self, body: dict[str, Any], on_text: Callable[[str], None] | None) -> dict[str, Any]:
        with self._post("generate_stream", body, "text/event-stream") as resp:
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise RemoteError(f"The server {self.url} failed: {event['error']}")
                if "RESULT" in event:
                    return event["RESULT"]
                if on_text and event.get("text_output"):
                    on_text(event["text_output"])
        raise RemoteError(f"The server {self.url} closed the stream before the result.")


def _error_of(body: bytes) -> str:
    try:
        return str(json.loads(body.decode("utf-8"))["error"])
    except Exception:
        return body.decode("utf-8", "replace")[:200]
