// Generates, from the one definition of each wire shape:
//   src/protocol/wire-types.ts       TypeScript types of src/protocol/wire.schema.json (json-schema-to-typescript)
//   src/protocol/wire-validators.ts  ajv's standalone validators of that schema: plain code without eval or
//                                  new Function (webview CSP) and without imports (src/protocol imports only
//                                  itself), so the same validators run in the host, the extension and browsers
//   src/kernel/reason_segment/protocol.json  RPC_ERRORS, method names (src/protocol/rpc.ts) and the result format and
//                                  MIME type (result.ts), read by the Python magic
//   src/host/manifest-types.ts       TypeScript types of the bundle manifest, models/bundle.schema.json (which the
//                                  host validates with ajv and the exporter with jsonschema)
// Run `npm run build && node out/test/protocol/wire_gen.js --write` after changing the schema or the error table;
// test/protocol/wire.test.ts fails while the committed files are stale.

import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import standaloneCode from 'ajv/dist/standalone';
import { compile } from 'json-schema-to-typescript';
import { RESULT_FORMAT, RESULT_MIME } from '../../src/protocol/result';
import {
  CANCEL_REQUEST_METHOD,
  LSP_REQUEST_CANCELLED,
  Methods,
  Notifications,
  RPC_ERRORS,
} from '../../src/protocol/rpc';

const ROOT = path.resolve(__dirname, '../../..');
export const SCHEMA_FILE = path.join(ROOT, 'src/protocol/wire.schema.json');
export const TYPES_FILE = path.join(ROOT, 'src/protocol/wire-types.ts');
export const VALIDATORS_FILE = path.join(ROOT, 'src/protocol/wire-validators.ts');
export const KERNEL_PROTOCOL_FILE = path.join(ROOT, 'src/kernel/reason_segment/protocol.json');
export const MANIFEST_SCHEMA_FILE = path.join(ROOT, 'models/bundle.schema.json');
export const MANIFEST_TYPES_FILE = path.join(ROOT, 'src/host/manifest-types.ts');

/** Exported validator name -> definition it checks. */
export const VALIDATORS: Record<string, string> = {
  segmentParams: 'SegmentParams',
  loadModelParams: 'LoadModelParams',
  refineParams: 'RefineParams',
  segmentResult: 'SegmentResult',
  cocoRle: 'CocoRle',
  chatTurns: 'ChatTurns',
  webviewMessage: 'WebviewMessage',
};

/** Definitions whose TypeScript type is exported. */
const TYPES = [
  'SegmentParams',
  'LoadModelParams',
  'RefineParams',
  'RefinePrompt',
  'RefineResult',
  'ImageInput',
  'SegmentResult',
  'ResultMask',
  'ResultImage',
  'StageTimings',
  'CocoRle',
  'ChatTurn',
  'Device',
  'DeviceChoice',
  'DeviceFallback',
  'WebviewMessage',
  'SaveFile',
];

const BANNER = (what: string) =>
  `// GENERATED from src/protocol/wire.schema.json by test/protocol/wire_gen.ts (${what}); do not edit.\n` +
  '// Regenerate: npm run build && node out/test/protocol/wire_gen.js --write\n' +
  // Formatting or fixing the file would make it differ from what the generator writes.
  '// biome-ignore-all format: generated\n// biome-ignore-all lint: generated\n// biome-ignore-all assist: generated\n';

export function readSchema(): Record<string, unknown> & { $id: string; definitions: Record<string, unknown> } {
  return JSON.parse(fs.readFileSync(SCHEMA_FILE, 'utf8'));
}

/**
 * An ajv that knows the schema's annotation keyword. `unicode: false` (lengths in UTF-16 units, as JavaScript counts
 * them) keeps ajv's ucs2length helper, and so an import, out of the code; ajv calls the option deprecated.
 */
export function newAjv(opts: ConstructorParameters<typeof Ajv>[0] = {}): Ajv {
  const logger = {
    log: console.log,
    error: console.error,
    warn: (m: string) => /option unicode/.test(m) || console.warn(m),
  };
  // strictRequired would refuse `not: {required: [...]}`, which names members defined in a sibling branch.
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    strict: true,
    strictRequired: false,
    unicode: false,
    discriminator: true,
    logger,
    ...opts,
  });
  ajv.addKeyword({ keyword: 'x-problem', schemaType: 'object' });
  return ajv;
}

async function types(schema: ReturnType<typeof readSchema>): Promise<string> {
  // json-schema-to-typescript emits what the root references: a root naming every exported definition.
  const root = {
    ...schema,
    $id: undefined,
    title: 'Wire',
    type: 'object',
    additionalProperties: false,
    required: TYPES,
    properties: Object.fromEntries(TYPES.map((t) => [t, { $ref: `#/definitions/${t}` }])),
  };
  const ts = await compile(root as never, 'Wire', {
    bannerComment: BANNER('types'),
    additionalProperties: false,
    unreachableDefinitions: false,
    style: { printWidth: 120, singleQuote: true },
  });
  // The root only served to reach the definitions.
  return ts.replace(/export interface Wire \{[\s\S]*?\n\}\n/, '').replace(/\n{3,}/g, '\n\n');
}

function validators(schema: ReturnType<typeof readSchema>): string {
  const ajv = newAjv({ code: { source: true, esm: true }, messages: false });
  ajv.addSchema(schema);
  const refs = Object.fromEntries(
    Object.entries(VALIDATORS).map(([name, def]) => [name, `${schema.$id}#/definitions/${def}`]),
  );
  const code = standaloneCode(ajv, refs);
  if (/\brequire\s*\(|\bimport\b/.test(code))
    throw new Error('the standalone validators import a runtime helper: avoid the keyword that needs it');
  // What a missing member behind a $ref should have been, for the "expected an object, got undefined" messages.
  const defs = Object.entries(schema.definitions) as [string, { type?: string; 'x-problem'?: { type?: string } }][];
  const types = Object.fromEntries(defs.map(([k, d]) => [`#/definitions/${k}`, d.type]));
  // The message of a missing member whose definition words its type error itself ("expected a string id").
  const typeProblems = Object.fromEntries(
    defs.filter(([, d]) => d['x-problem']?.type).map(([k, d]) => [`#/definitions/${k}`, d['x-problem']?.type]),
  );
  // The values a discriminated oneOf accepts, to name them when a message has an unknown type.
  const tags = Object.fromEntries(
    defs.map(([k, d]) => [
      `#/definitions/${k}`,
      (d as { properties?: { type?: { enum?: string[] } } }).properties?.type?.enum,
    ]),
  );
  return (
    `${BANNER('validators')}// @ts-nocheck\n${code}\nexport const refTypes = ${JSON.stringify(types)};\n` +
    `export const refTypeProblems = ${JSON.stringify(typeProblems)};\n` +
    `export const refTypeTags = ${JSON.stringify(Object.fromEntries(Object.entries(tags).filter(([, v]) => v)))};\n`
  );
}

function kernelProtocol(): string {
  const errors = Object.fromEntries(
    Object.entries(RPC_ERRORS).map(([code, e]) => [e.name, { code: Number(code), title: e.title, hint: e.hint }]),
  );
  const table = {
    $comment: 'GENERATED from src/protocol/rpc.ts and result.ts by test/protocol/wire_gen.ts; do not edit.',
    resultFormat: RESULT_FORMAT,
    resultMime: RESULT_MIME,
    methods: { ...Methods, ...Notifications, cancel: CANCEL_REQUEST_METHOD },
    lspRequestCancelled: LSP_REQUEST_CANCELLED,
    errors,
  };
  return `${JSON.stringify(table, null, 2)}\n`;
}

async function manifestTypes(): Promise<string> {
  const schema = JSON.parse(fs.readFileSync(MANIFEST_SCHEMA_FILE, 'utf8'));
  schema.title = 'Manifest';
  schema.$defs.graph.title = 'GraphSpec';
  schema.$defs.tensor.title = 'TensorSpec';
  return compile(schema, 'Manifest', {
    bannerComment: BANNER('manifest types').replace(/src\/protocol\/wire\.schema\.json/, 'models/bundle.schema.json'),
    additionalProperties: false,
    style: { printWidth: 120, singleQuote: true },
  });
}

export async function generate(): Promise<Record<string, string>> {
  const schema = readSchema();
  return {
    [TYPES_FILE]: await types(schema),
    [VALIDATORS_FILE]: validators(schema),
    [KERNEL_PROTOCOL_FILE]: kernelProtocol(),
    [MANIFEST_TYPES_FILE]: await manifestTypes(),
  };
}

if (require.main === module) {
  void generate().then((files) => {
    const write = process.argv.includes('--write');
    for (const [file, text] of Object.entries(files)) {
      const same = fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text;
      if (write && !same) fs.writeFileSync(file, text);
      console.log(`${path.relative(ROOT, file)}: ${same ? 'up to date' : write ? 'written' : 'STALE'}`);
    }
  });
}
