// The trained shapes bundle (npm run train:tiny) on a held-out split of the generator (a seed it was not trained on),
// scored by `eval`'s own code: LISA's validate() protocol for gIoU/cIoU, the model's own answers for naming. Its
// quantised exports are scored the same way.
//
// The bounds are what the committed bundle reaches, less a margin for float differences across CPU makes (0.03 of IoU,
// about 6 of the 80 answers), NOT issue 12's goals (gIoU and cIoU >= 0.80, the right shape named in >= 90% of
// answers): the two-stage recipe (SAM's stage, SAM's decoder on the frozen encoder, then 1200 steps of LISA's stage
// with SAM's loss kept; docs/evaluation.md) got it to gIoU 0.285, cIoU 0.236, named 42.5% (w8a8: 0.285, 0.236, 42.5%;
// int4: 0.285, 0.236, 45.0%); the one-stage bundle before it scored 0.241, 0.218, 41.3%. The [SEG] masks are the weak
// half (the bundle's README). The random-weight tiny-7b scored 0.03 and 0% on a few of these scenes, so these bounds
// still catch a bundle that has lost its training.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { evaluate, readReasonSeg, type Sample } from '../../src/host/eval';
import { LisaPipeline } from '../../src/host/pipeline';
import { FIXTURE_BUNDLES, REPO } from '../helpers/bundles';

const TRAINED = path.join(FIXTURE_BUNDLES, 'shapes-7b');
const QUANTISED = path.join(REPO, 'test', 'fixtures', 'trained');
const HELD_OUT_SEED = 20261130; // training used seed 1, its goldens seed 424242
const SCENES = 40;

interface Figures {
  giou: number;
  ciou: number;
  named: number;
}

async function score(bundle: string, samples: Sample[], dir: string): Promise<Figures> {
  const pipeline = await LisaPipeline.load(bundle, { verifyCacheFile: null });
  try {
    const tag = path.basename(bundle);
    const lisa = await evaluate(pipeline, samples, path.join(dir, `${tag}-lisa.csv`), 'test', {
      protocol: 'lisa',
      allTexts: false,
    });
    const answer = await evaluate(pipeline, samples, path.join(dir, `${tag}-answer.csv`), 'test', {
      protocol: 'answer',
      allTexts: true,
      maxNewTokens: 48,
    });
    assert.equal(lisa.failures.length + answer.failures.length, 0);
    const f = { giou: lisa.giou, ciou: lisa.ciou, named: answer.named ?? 0 };
    console.log(
      `      ${tag}: gIoU ${f.giou.toFixed(3)} cIoU ${f.ciou.toFixed(3)} named ${(100 * f.named).toFixed(1)}% ` +
        `(answers: gIoU ${answer.giou.toFixed(3)} cIoU ${answer.ciou.toFixed(3)}, ${answer.samples} answers)`,
    );
    return f;
  } finally {
    await pipeline.dispose();
  }
}

describe('the trained shapes bundle on a held-out split', function () {
  this.timeout(1_200_000);
  let dir: string;
  let samples: Sample[];
  before(async function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rs-heldout-'));
    execFileSync(
      path.join(REPO, 'models', 'export', 'venv'),
      ['run', '-m', 'lisa_export.shapes', '--seed', String(HELD_OUT_SEED), '--count', String(SCENES), '--out', dir],
      { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    samples = await readReasonSeg(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fp32: gIoU >= 0.25 and cIoU >= 0.2 as LISA validates, and names the right shape in >= 35% of its answers', async function () {
    const f = await score(TRAINED, samples, dir);
    assert.ok(f.giou >= 0.25, `gIoU ${f.giou}`);
    assert.ok(f.ciou >= 0.2, `cIoU ${f.ciou}`);
    assert.ok(f.named >= 0.35, `named ${f.named}`);
  });

  for (const weights of ['w8a8', 'int4']) {
    it(`${weights}: gIoU >= 0.25, cIoU >= 0.2, named >= 33% (looser than fp32)`, async function () {
      const bundle = path.join(QUANTISED, `shapes-7b-${weights}`);
      assert.ok(existsSync(bundle), `${bundle} is committed with the fp32 bundle`);
      const f = await score(bundle, samples, dir);
      assert.ok(f.giou >= 0.25 && f.ciou >= 0.2, `gIoU ${f.giou} cIoU ${f.ciou}`);
      assert.ok(f.named >= 0.33, `named ${f.named}`);
    });
  }
});
