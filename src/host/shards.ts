// Batch results (COCO JSON) and how a batch is split and joined: `batch --shard i/N` takes a deterministic 1/N of the
// sorted image list (every N-th file from the i-th, so shards get alike mixes), and `merge` joins the N shard outputs
// into the file one process would have written: images and failures in sorted order, ids renumbered in that order.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { HostError } from './errors';

export const BATCH_DESCRIPTION = 'Reason Segment batch results';
export const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff']);

export interface Shard {
  index: number;
  count: number;
}

/** What a shard's output records about itself, so that merge can tell a finished shard from a cut one. */
export interface ShardInfo extends Shard {
  /** How many images the shard was given. */
  files: number;
}

export interface CocoOutput {
  info: { prompt: string; model: string; description: string; shard?: ShardInfo };
  images: Array<{ id: number; file_name: string; width: number; height: number; text: string }>;
  annotations: Array<{
    id: number;
    image_id: number;
    category_id: number;
    segmentation: unknown;
    area: number;
    bbox: number[];
    score: number;
  }>;
  categories: Array<{ id: number; name: string }>;
  failures: Array<{ file_name: string; error: string }>;
}

const invalid = (message: string) => new HostError('ParamsInvalid', message);

/** "i/N": shard i (counted from 0, as a Kubernetes Indexed Job's JOB_COMPLETION_INDEX) of N. */
export function parseShard(spec: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || count < 1 || index >= count) throw invalid(`--shard ${spec}: write i/N with 0 <= i < N (e.g. 0/4 ... 3/4)`);
  return { index, count };
}

export function shardOf<T>(sorted: T[], shard: Shard | undefined): T[] {
  return shard ? sorted.filter((_, i) => i % shard.count === shard.index) : sorted;
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The images of a batch, sorted: a folder's image files, or the lines of a list file (paths relative to the list's
 * folder; blank lines and # comments skipped). `root` is what the names are relative to.
 */
export async function listImages(spec: string): Promise<{ root: string; files: string[] }> {
  let isDir: boolean;
  try {
    isDir = (await fs.stat(spec)).isDirectory();
  } catch (e) {
    throw invalid(
      `--images ${spec} cannot be read (${(e as NodeJS.ErrnoException).code}); give a folder of images or a file that lists them`,
    );
  }
  if (isDir) {
    const files = (await fs.readdir(spec))
      .filter((f) => IMAGE_EXTENSIONS.has(path.extname(f).toLowerCase()))
      .sort(byName);
    if (files.length === 0) throw invalid(`${spec} holds no images (${[...IMAGE_EXTENSIONS].join(' ')})`);
    return { root: spec, files };
  }
  const lines = (await fs.readFile(spec, 'utf8'))
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const files = [...new Set(lines)].sort(byName);
  if (files.length === 0) throw invalid(`${spec} lists no images; write one image path a line`);
  return { root: path.dirname(spec), files };
}

/** A new shard output records its shard; a resumed one must be the same shard of the same list. */
export function claimShard(coco: CocoOutput, shard: Shard | undefined, files: number, outFile: string): void {
  const had = coco.info.shard;
  const started = coco.images.length + coco.failures.length > 0;
  if (!shard) {
    if (had)
      throw invalid(
        `${outFile} holds shard ${had.index}/${had.count}; add --shard ${had.index}/${had.count} to resume it, or choose another --out`,
      );
    return;
  }
  if (started && (!had || had.index !== shard.index || had.count !== shard.count || had.files !== files)) {
    const what = had ? `shard ${had.index}/${had.count} of ${had.files} images` : 'an unsharded run';
    throw invalid(
      `${outFile} holds ${what}, not shard ${shard.index}/${shard.count} of ${files}; choose another --out`,
    );
  }
  coco.info.shard = { ...shard, files };
}

async function readBatchFile(file: string): Promise<CocoOutput> {
  let coco: CocoOutput | undefined;
  try {
    coco = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw invalid(`${file} cannot be read (${code ?? 'not JSON'}); give the --out files of the shards`);
  }
  if (
    coco?.info?.description !== BATCH_DESCRIPTION ||
    !Array.isArray(coco.images) ||
    !Array.isArray(coco.failures) ||
    !Array.isArray(coco.annotations)
  ) {
    throw invalid(`${file} is not a Reason Segment batch result`);
  }
  return coco;
}

/** Joins finished shards of one batch; refuses missing, repeated, unfinished or mismatched shards. */
function mergeShards(parts: Array<{ file: string; coco: CocoOutput }>): CocoOutput {
  const [first] = parts;
  const count = first.coco.info.shard?.count;
  const seen = new Map<number, string>();
  for (const { file, coco } of parts) {
    const s = coco.info.shard;
    if (!s) throw invalid(`${file} is not a shard (it was written without --shard)`);
    if (s.count !== count) throw invalid(`${file} is shard ${s.index}/${s.count} but ${first.file} is one of ${count}`);
    if (coco.info.prompt !== first.coco.info.prompt) throw invalid(`${file} has another prompt than ${first.file}`);
    if (coco.info.model !== first.coco.info.model)
      throw invalid(`${file} was made with model ${coco.info.model}, ${first.file} with ${first.coco.info.model}`);
    if (seen.has(s.index)) throw invalid(`${file} and ${seen.get(s.index)} are both shard ${s.index}/${s.count}`);
    seen.set(s.index, file);
    const done = coco.images.length + coco.failures.length;
    if (done !== s.files)
      throw invalid(
        `${file} (shard ${s.index}/${s.count}) has ${done} of its ${s.files} images; run that shard again to finish it (it resumes)`,
      );
  }
  const missing = Array.from({ length: count as number }, (_, i) => i).filter((i) => !seen.has(i));
  if (missing.length)
    throw invalid(`shard(s) ${missing.map((i) => `${i}/${count}`).join(', ')} missing; merge needs all ${count}`);

  type Entry = {
    name: string;
    image?: CocoOutput['images'][number];
    failure?: CocoOutput['failures'][number];
    annotations: CocoOutput['annotations'];
  };
  const entries: Entry[] = [];
  for (const { coco } of parts) {
    const masks = new Map<number, CocoOutput['annotations']>();
    for (const a of coco.annotations) masks.set(a.image_id, [...(masks.get(a.image_id) ?? []), a]);
    for (const image of coco.images)
      entries.push({ name: image.file_name, image, annotations: masks.get(image.id) ?? [] });
    for (const failure of coco.failures) entries.push({ name: failure.file_name, failure, annotations: [] });
  }
  entries.sort((a, b) => byName(a.name, b.name));
  const out: CocoOutput = {
    info: { prompt: first.coco.info.prompt, model: first.coco.info.model, description: BATCH_DESCRIPTION },
    images: [],
    annotations: [],
    categories: first.coco.categories,
    failures: [],
  };
  // Ids as one process gives them: each image or failure takes the next image id, masks the next annotation id.
  for (const [i, e] of entries.entries()) {
    if (i > 0 && e.name === entries[i - 1].name)
      throw invalid(`${e.name} is in two shards; were they made from the same list?`);
    const id = i + 1;
    if (e.failure) {
      out.failures.push(e.failure);
      continue;
    }
    out.images.push({ ...(e.image as CocoOutput['images'][number]), id });
    for (const a of e.annotations) out.annotations.push({ ...a, id: out.annotations.length + 1, image_id: id });
  }
  return out;
}

/** The merged result of shard files, checked before --out is touched: --out may only replace a batch result. */
export async function mergeShardFiles(files: string[], outFile: string): Promise<CocoOutput> {
  const parts = await Promise.all(files.map(async (file) => ({ file, coco: await readBatchFile(file) })));
  try {
    await fs.access(outFile);
  } catch {
    return mergeShards(parts);
  }
  const existing = await readBatchFile(outFile).catch(() => undefined);
  if (!existing)
    throw invalid(
      `--out ${outFile} exists and is not a Reason Segment batch result; it was left untouched: choose another file`,
    );
  return mergeShards(parts);
}
