"""The magic's method names, error codes and result format come from protocol.json, generated from the host's
src/protocol (test/protocol/wire.test.ts keeps it in step); nothing is written out by hand here."""

import json
from pathlib import Path

from reason_segment.host import ErrorCode, Methods, RpcError
from reason_segment.protocol import RESULT_FORMAT, RESULT_MIME

TABLE = json.loads((Path(__file__).resolve().parents[1] / "reason_segment" / "protocol.json").read_text("utf-8"))


def test_every_code_of_the_table_has_its_name():
    assert TABLE["errors"], "empty error table"
    for name, error in TABLE["errors"].items():
        assert getattr(ErrorCode, name) == error["code"], name


def test_cancellation_codes_are_the_hosts():
    assert RpcError(TABLE["errors"]["Cancelled"]["code"], "x").cancelled
    assert RpcError(TABLE["lspRequestCancelled"], "x").cancelled
    assert not RpcError(TABLE["errors"]["Internal"]["code"], "x").cancelled


def test_method_names_and_result_format_are_the_hosts():
    assert Methods.segment == TABLE["methods"]["segment"] == "reasonSegment/segment"
    assert Methods.cancel == "$/cancelRequest"
    assert {"loadModel", "unloadModel", "segment", "status", "shutdown", "textDelta", "progress"} <= set(vars(Methods))
    assert RESULT_FORMAT == TABLE["resultFormat"]
    assert RESULT_MIME == TABLE["resultMime"]
