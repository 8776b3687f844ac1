"""The magic's error codes come from rpc_errors.json, the table generated from the host's RPC_ERRORS."""

import json
from pathlib import Path

from reason_segment.host import ErrorCode, RpcError

TABLE = json.loads((Path(__file__).resolve().parents[1] / "reason_segment" / "rpc_errors.json").read_text("utf-8"))


def test_every_code_of_the_table_has_its_name():
    assert TABLE["errors"], "empty error table"
    for name, error in TABLE["errors"].items():
        assert getattr(ErrorCode, name) == error["code"], name


def test_cancellation_codes_are_the_hosts():
    assert ErrorCode.Cancelled == TABLE["errors"]["Cancelled"]["code"]
    assert RpcError(TABLE["errors"]["Cancelled"]["code"], "x").cancelled
    assert RpcError(TABLE["lspRequestCancelled"], "x").cancelled
    assert not RpcError(TABLE["errors"]["Internal"]["code"], "x").cancelled
