"""What the magic shares with the host: method names, error codes, the result format and MIME type.

Read from protocol.json, which is generated from src/protocol/rpc.ts and result.ts (test/protocol/wire_gen.ts); a test
there fails when it is stale, so these values are never written out by hand on the Python side.
"""

from __future__ import annotations

import json
from pathlib import Path

PROTOCOL = json.loads(Path(__file__).with_name("protocol.json").read_text("utf-8"))

RESULT_FORMAT: str = PROTOCOL["resultFormat"]
RESULT_MIME: str = PROTOCOL["resultMime"]


class Methods:
    """JSON-RPC method and notification names (``Methods.segment``, ``Methods.textDelta``, ``Methods.cancel``...)."""


class ErrorCode:
    """The host's error codes by name (``ErrorCode.Cancelled``...), and LSP's ``LspRequestCancelled``."""

    LspRequestCancelled: int = PROTOCOL["lspRequestCancelled"]


for _name, _method in PROTOCOL["methods"].items():
    setattr(Methods, _name, _method)
for _name, _error in PROTOCOL["errors"].items():
    setattr(ErrorCode, _name, _error["code"])
