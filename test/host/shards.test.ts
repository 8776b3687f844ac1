// Sharded batch as a cluster runs it: N `batch --shard i/N` processes on the committed tiny bundle and real images
// (some broken), one of them killed halfway and run again, then `merge`; the result must be the file one `batch`
// process writes, byte for byte.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseShard, shardOf } from '../../src/host/shards';
import { FIXTURE_BUNDLES, REPO } from '../helpers/bundles';
import { CLI, startServer } from '../helpers/oip';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const IMAGES = path.join(REPO, 'test', 'fixtures', 'images');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-shards-'));
const env = { ...process.env, XDG_CACHE_HOME: tmp };
const PICKED = [
  'chelsea.jpg',
  'coffee.jpg',
  'empty.png',
  'rocket-portrait.jpg',
  'rocket.jpg',
  'camera-gray.jpg',
  'truncated.jpg',
  'coffee-exif6.jpg',
];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
}

describe('batch --shard and merge', function () {
  this.timeout(240_000);
  const dir = path.join(tmp, 'images');
  // [SEG] in the forced prefix gives every readable image a mask, so annotation ids are checked too.
  const common = [
    'batch',
    '--model',
    BUNDLE,
    '--images',
    dir,
    '--prompt',
    'Segment the main object.',
    '--assistant-prefix',
    'Sure, [SEG].',
    '--max-new-tokens',
    '2',
  ];
  const out = (name: string) => path.join(tmp, name);

  before(() => {
    mkdirSync(dir);
    for (const f of PICKED) cpSync(path.join(IMAGES, f), path.join(dir, f));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('takes every N-th file from the i-th, and refuses a malformed shard', () => {
    const names = Array.from({ length: 8 }, (_, i) => `f${i}`);
    assert.deepEqual(shardOf(names, parseShard('1/3')), ['f1', 'f4', 'f7']);
    assert.deepEqual([0, 1, 2].flatMap((i) => shardOf(names, { index: i, count: 3 })).sort(), names);
    for (const bad of ['3/3', '1', '-1/3', '0/0', 'a/b'])
      assert.throws(() => parseShard(bad), /write i\/N with 0 <= i < N/);
  });

  it("3 shards, one killed halfway and run again, merge into the single run's file byte for byte", async () => {
    const single = cli([...common, '--out', out('single.json')]);
    assert.equal(single.code, 0, single.stderr);
    const one = JSON.parse(readFileSync(out('single.json'), 'utf8'));
    assert.equal(one.images.length + one.failures.length, PICKED.length);
    assert.ok(
      one.failures.length >= 2 && one.annotations.length >= one.images.length,
      'broken images fail, readable ones get masks',
    );

    for (const i of [0, 2]) assert.equal(cli([...common, '--shard', `${i}/3`, '--out', out(`s${i}.json`)]).code, 0);

    // Shard 1/3 (three images): killed once its first image is written, then run again.
    const killed = spawn(process.execPath, [CLI, ...common, '--shard', '1/3', '--out', out('s1.json')], {
      env,
      stdio: 'ignore',
    });
    const written = () => (existsSync(out('s1.json')) ? JSON.parse(readFileSync(out('s1.json'), 'utf8')) : undefined);
    while (!(written()?.images.length + written()?.failures.length >= 1)) {
      assert.equal(killed.exitCode, null, 'the shard finished before it could be killed');
      await new Promise((r) => setTimeout(r, 10));
    }
    killed.kill('SIGKILL');
    await new Promise((r) => killed.on('exit', r));
    const cut = written();
    assert.ok(cut.images.length + cut.failures.length < 3, 'killed halfway');
    const early = cli(['merge', '--out', out('merged.json'), out('s0.json'), out('s1.json'), out('s2.json')]);
    assert.equal(early.code, 1);
    assert.match(early.stderr, /shard 1\/3\) has \d of its 3 images; run that shard again/);

    const rerun = cli([...common, '--shard', '1/3', '--out', out('s1.json')]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, /resuming: \d of 3/);
    const names = [...written().images, ...written().failures].map((e: { file_name: string }) => e.file_name);
    assert.deepEqual(names.slice().sort(), shardOf(PICKED.slice().sort(), { index: 1, count: 3 }), 'each image once');

    const merged = cli(['merge', '--out', out('merged.json'), out('s2.json'), out('s0.json'), out('s1.json')]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.ok(
      readFileSync(out('merged.json')).equals(readFileSync(out('single.json'))),
      'merged file == single run, byte for byte',
    );
  });

  it('batch --server sends the work to a reason-segment serve and writes what a local batch writes', async () => {
    const tokens = path.join(tmp, 'tokens');
    writeFileSync(tokens, `${'a'.repeat(32)}\n`);
    const server = await startServer(['--model', BUNDLE, '--token-file', tokens], env);
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const remote = ['batch', ...common.slice(3), '--server', url, '--token-file', tokens];
      const r = cli([...remote, '--out', out('remote.json')]);
      assert.equal(r.code, 0, r.stderr);
      const local = JSON.parse(readFileSync(out('single.json'), 'utf8'));
      const got = JSON.parse(readFileSync(out('remote.json'), 'utf8'));
      assert.deepEqual(got.info, local.info);
      assert.deepEqual(got.images, local.images);
      assert.deepEqual(got.annotations, local.annotations);
      assert.deepEqual(
        got.failures.map((f: { file_name: string }) => f.file_name),
        local.failures.map((f: { file_name: string }) => f.file_name),
      );

      writeFileSync(path.join(tmp, 'wrong'), `${'b'.repeat(32)}\n`);
      const refused = cli([...remote.slice(0, -1), path.join(tmp, 'wrong'), '--out', out('refused.json')]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /answered 401: the bearer token is not valid; give --token-file/);
    } finally {
      await server.stop();
    }
    const gone = cli([
      'batch',
      ...common.slice(3),
      '--server',
      `http://127.0.0.1:${server.port}`,
      '--out',
      out('gone.json'),
    ]); // stopped
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /cannot be reached \(ECONNREFUSED\); check --server/);
  });

  it('merge refuses missing, repeated and foreign inputs, and a foreign --out', () => {
    const missing = cli(['merge', '--out', out('m.json'), out('s0.json'), out('s1.json')]);
    assert.match(missing.stderr, /shard\(s\) 2\/3 missing/);
    const twice = cli(['merge', '--out', out('m.json'), out('s0.json'), out('s0.json'), out('s2.json')]);
    assert.match(twice.stderr, /are both shard 0\/3/);
    const unsharded = cli(['merge', '--out', out('m.json'), out('single.json')]);
    assert.match(unsharded.stderr, /not a shard/);
    writeFileSync(out('notes.json'), '{"mine": true}');
    const foreign = cli(['merge', '--out', out('notes.json'), out('s0.json'), out('s1.json'), out('s2.json')]);
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /not a Reason Segment batch result; it was left untouched/);
    assert.equal(readFileSync(out('notes.json'), 'utf8'), '{"mine": true}');
    const wrongShard = cli([...common, '--shard', '0/2', '--out', out('s0.json')]);
    assert.match(wrongShard.stderr, /holds shard 0\/3 of 3 images, not shard 0\/2/);
  });

  it('takes a list file instead of a folder', () => {
    const list = path.join(dir, 'list.txt');
    writeFileSync(list, '# two of them\nrocket.jpg\n\nchelsea.jpg\n');
    const r = cli([...common.slice(0, 3), '--images', list, ...common.slice(5), '--out', out('list.json')]);
    assert.equal(r.code, 0, r.stderr);
    const coco = JSON.parse(readFileSync(out('list.json'), 'utf8'));
    assert.deepEqual(
      coco.images.map((i: { file_name: string }) => i.file_name),
      ['chelsea.jpg', 'rocket.jpg'],
    );
  });
});
