// The extension's translators as tests use them: English fills `{0}`-style placeholders; Chinese looks the message
// up in l10n/bundle.l10n.zh-cn.json and fails the test when a string has no translation.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Translate } from '../../src/extension/hostStatus';
import { REPO } from './bundles';

const ZH: Record<string, string> = JSON.parse(readFileSync(path.join(REPO, 'l10n/bundle.l10n.zh-cn.json'), 'utf8'));
const fill = (m: string, args: Array<string | number>) => m.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)]));

export const en: Translate = (m, ...a) => fill(m, a);
export const zh: Translate = (m, ...a) => {
  assert.ok(ZH[m], `l10n/bundle.l10n.zh-cn.json lacks ${JSON.stringify(m)}`);
  return fill(ZH[m], a);
};
