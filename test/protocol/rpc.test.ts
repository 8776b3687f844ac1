// The RPC surface: error codes in the server range with hints, method names, and messages as users will read them.
import * as assert from 'node:assert/strict';
import {
  CANCEL_REQUEST_METHOD,
  errorInfo,
  errorMessage,
  errorName,
  errorResponse,
  isCancellation,
  isRpcErrorCode,
  LSP_REQUEST_CANCELLED,
  Methods,
  Notifications,
  RPC_ERRORS,
  RpcErrorCode,
} from '../../src/protocol/rpc';

describe('protocol/rpc', function () {
  it('gives every error a unique code in the JSON-RPC server-error range, a title and a hint', function () {
    const required = [
      'ImageUnreadable',
      'ImageTooLarge',
      'BundleInvalid',
      'BundleChecksum',
      'BundlePathEscape',
      'BundleMissingFile',
      'ModelNotLoaded',
      'PromptTooLong',
      'Cancelled',
      'ProviderUnavailable',
      'Internal',
    ];
    for (const n of required) assert.ok(n in RpcErrorCode, n);
    const codes = Object.values(RpcErrorCode);
    assert.equal(new Set(codes).size, codes.length);
    for (const [name, code] of Object.entries(RpcErrorCode)) {
      assert.ok(code <= -32000 && code >= -32099, `${name} ${code}`);
      const info = RPC_ERRORS[code];
      assert.equal(info.name, name);
      assert.ok(info.title.length > 5 && !/\n/.test(info.title));
      assert.ok(/\.$/.test(info.hint) && !/\n/.test(info.hint), info.hint);
      assert.equal(errorName(code), name);
    }
  });

  it('writes one-line messages with the detail and the hint', function () {
    assert.equal(
      errorMessage(RpcErrorCode.ImageUnreadable, 'photo.jpg is truncated.\n'),
      'The image could not be read: photo.jpg is truncated. Check that the file exists and is a complete PNG, JPEG, WebP, GIF, TIFF or BMP image.',
    );
    assert.equal(
      errorMessage(RpcErrorCode.ModelNotLoaded),
      'No model is loaded. Select a model first (Reason Segment: Select Model, or --model).',
    );
    assert.match(errorMessage(-1, 'boom'), /^Internal error in the inference host: boom\. Restart/);
    assert.equal(errorInfo(12345).name, 'Internal');
    assert.equal(isRpcErrorCode(-32700), false);
  });

  it('builds JSON-RPC error objects with data for clients', function () {
    const e = errorResponse(RpcErrorCode.BundleChecksum, 'llm_decoder.onnx sha256 differs', 'llm_decoder.onnx');
    assert.equal(e.code, -32011);
    assert.deepEqual(e.data, {
      name: 'BundleChecksum',
      hint: RPC_ERRORS[RpcErrorCode.BundleChecksum].hint,
      detail: 'llm_decoder.onnx sha256 differs',
      path: 'llm_decoder.onnx',
    });
    assert.ok(
      e.message.startsWith('A model bundle file does not match its checksum: llm_decoder.onnx sha256 differs.'),
    );
  });

  it('treats both cancellation codes as cancellation', function () {
    assert.ok(isCancellation(RpcErrorCode.Cancelled));
    assert.ok(isCancellation(LSP_REQUEST_CANCELLED));
    assert.ok(!isCancellation(RpcErrorCode.Internal));
  });

  it('names methods under reasonSegment/ and uses LSP cancellation', function () {
    for (const m of [...Object.values(Methods), ...Object.values(Notifications)])
      assert.match(m, /^reasonSegment\/[a-z][A-Za-z]+$/);
    assert.deepEqual(Object.values(Methods).sort(), [
      'reasonSegment/loadModel',
      'reasonSegment/refine',
      'reasonSegment/segment',
      'reasonSegment/shutdown',
      'reasonSegment/status',
      'reasonSegment/unloadModel',
    ]);
    assert.equal(CANCEL_REQUEST_METHOD, '$/cancelRequest');
  });
});
