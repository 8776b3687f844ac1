// Opens a LISA ONNX bundle (docs/bundle-format.md): the manifest is checked against models/bundle.schema.json, every
// path must stay inside the bundle folder (symlinks resolved), every file must exist and match its sha256. Hashing a
// multi-GB bundle takes a while, so a verified file is remembered by (path, size, mtime, inode) and not hashed again.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { HostError } from './errors';
import type { Manifest } from './manifest-types';

export const MANIFEST_FILE = 'lisa.manifest.json';
const BUNDLE_FORMAT = 'lisa-onnx/1';

export type GraphName =
  | 'vision_encoder'
  | 'embed_tokens'
  | 'decoder'
  | 'seg_projector'
  | 'sam_image_encoder'
  | 'sam_mask_decoder';
export const GRAPH_NAMES: GraphName[] = [
  'vision_encoder',
  'embed_tokens',
  'decoder',
  'seg_projector',
  'sam_image_encoder',
  'sam_mask_decoder',
];

// The manifest's types are generated from models/bundle.schema.json, its one definition.
export type { GraphSpec, Manifest, TensorSpec } from './manifest-types';
// A type alias, not an interface, so it is assignable to the tokenizer's open-ended TokenIds.
export type TokenSpec = Manifest['tokens'];
export type PromptSpec = Manifest['prompt'];

export interface Bundle {
  dir: string;
  manifest: Manifest;
  /** Absolute path of a file named in the manifest. */
  resolve(rel: string): string;
}

export interface OpenBundleOptions {
  /** Where verified-file records live; undefined turns the cache off. */
  verifyCacheFile?: string;
  onProgress?: (message: string, loaded: number, total: number) => void;
}

export const defaultVerifyCacheFile = (): string =>
  path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'reason-segment', 'verified-files.json');

let validateManifest: (((m: unknown) => boolean) & { errors?: unknown }) | undefined;

async function schemaValidator() {
  if (!validateManifest) {
    const schemaPath = path.join(__dirname, '..', '..', '..', 'models', 'bundle.schema.json');
    const schema = JSON.parse(await fs.readFile(schemaPath, 'utf8'));
    validateManifest = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
  }
  return validateManifest;
}

export async function openBundle(dir: string, opts: OpenBundleOptions = {}): Promise<Bundle> {
  let root: string;
  try {
    root = await fs.realpath(dir);
  } catch {
    throw new HostError(
      'BundleMissingFile',
      `Model folder ${dir} does not exist: point the model setting at a folder holding ${MANIFEST_FILE}.`,
    );
  }
  const manifestPath = path.join(root, MANIFEST_FILE);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await fs.readFile(manifestPath, 'utf8'));
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new HostError(
      missing ? 'BundleMissingFile' : 'BundleInvalid',
      missing
        ? `${dir} is not a Reason Segment model: it has no ${MANIFEST_FILE}. Export one with models/export or pick another folder.`
        : `${manifestPath} is not valid JSON (${(e as Error).message}); re-export or re-download the model.`,
    );
  }
  if (manifest?.format !== BUNDLE_FORMAT) {
    throw new HostError(
      'BundleInvalid',
      `${dir} has model format ${JSON.stringify(manifest?.format)}; this version reads ${BUNDLE_FORMAT}. Re-export the model with this version's exporter.`,
    );
  }
  // Before the schema, so a path that climbs out is reported as what it is rather than as a schema mismatch.
  for (const rel of namedPaths(manifest)) assertNoClimb(rel);
  const validate = await schemaValidator();
  if (!validate(manifest)) {
    const first = (validate.errors as Array<{ instancePath: string; message: string }>)[0];
    throw new HostError(
      'BundleInvalid',
      `${manifestPath} does not match the bundle schema at ${first.instancePath || '/'}: ${first.message}. Re-export the model.`,
    );
  }

  const resolve = (rel: string) => path.join(root, rel);
  const named = new Set<string>(Object.keys(manifest.files));
  for (const g of GRAPH_NAMES) {
    const spec = manifest.graphs[g];
    for (const f of [spec.file, ...(spec.external_data ?? [])]) {
      if (!named.has(f))
        throw new HostError(
          'BundleInvalid',
          `${MANIFEST_FILE} names ${f} for graph ${g} but gives no checksum for it; re-export the model.`,
        );
    }
  }
  if (!named.has('tokenizer.json'))
    throw new HostError('BundleInvalid', `${MANIFEST_FILE} lists no tokenizer.json; re-export the model.`);

  await verifyFiles(root, manifest.files, opts);
  return { dir: root, manifest, resolve };
}

interface VerifiedRecord {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

async function verifyFiles(root: string, files: Manifest['files'], opts: OpenBundleOptions): Promise<void> {
  const cache = opts.verifyCacheFile ? await readCache(opts.verifyCacheFile) : {};
  let dirty = false;
  const entries = Object.entries(files);
  const total = entries.reduce((n, [, f]) => n + f.bytes, 0);
  let done = 0;
  for (const [rel, expect] of entries) {
    const abs = await insideBundle(root, rel);
    const st = await fs.stat(abs);
    const known = cache[abs];
    const unchanged = known && known.size === st.size && known.mtimeMs === st.mtimeMs && known.ino === st.ino;
    const sha = unchanged ? known.sha256 : await sha256File(abs);
    if (sha !== expect.sha256) {
      throw new HostError(
        'BundleChecksum',
        `${rel} in ${root} is damaged or was changed (sha256 ${sha.slice(0, 12)}…, expected ${expect.sha256.slice(0, 12)}…); download or export the model again.`,
      );
    }
    if (!unchanged) {
      cache[abs] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, sha256: sha };
      dirty = true;
    }
    done += expect.bytes;
    opts.onProgress?.(`verified ${rel}`, done, total);
  }
  if (dirty && opts.verifyCacheFile) await writeCache(opts.verifyCacheFile, cache);
}

/** Every path a manifest names, read defensively: this runs before the schema has vouched for its shape. */
function namedPaths(manifest: Manifest): string[] {
  const files = manifest.files && typeof manifest.files === 'object' ? Object.keys(manifest.files) : [];
  const graphs = manifest.graphs && typeof manifest.graphs === 'object' ? Object.values(manifest.graphs) : [];
  const graphFiles = graphs.flatMap((g) => [g?.file, ...(Array.isArray(g?.external_data) ? g.external_data : [])]);
  return [...files, ...graphFiles].filter((f): f is string => typeof f === 'string');
}

function assertNoClimb(rel: string): void {
  if (path.isAbsolute(rel) || rel.split(/[\\/]/).includes('..')) {
    throw new HostError(
      'BundlePathEscape',
      `${MANIFEST_FILE} names ${rel}, which points outside the model folder; refusing to load it.`,
    );
  }
}

/** Resolves a manifest path and proves it stays inside the bundle, following symlinks. */
async function insideBundle(root: string, rel: string): Promise<string> {
  assertNoClimb(rel);
  let real: string;
  try {
    real = await fs.realpath(path.join(root, rel));
  } catch {
    throw new HostError('BundleMissingFile', `${rel} is missing from ${root}; download or export the model again.`);
  }
  if (real !== root && !real.startsWith(root + path.sep)) {
    throw new HostError(
      'BundlePathEscape',
      `${rel} in ${root} links to ${real}, outside the model folder; refusing to load it.`,
    );
  }
  return real;
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

async function readCache(file: string): Promise<Record<string, VerifiedRecord>> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8'));
  } catch {
    return {};
  }
}

async function writeCache(file: string, cache: Record<string, VerifiedRecord>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(cache));
  await fs.rename(tmp, file);
}
