// Reading the `reasonSegment.*` settings into one typed object, with defaults and clamping. Pure (no vscode import)
// so it is unit-tested in Node; extension code passes `(key) => workspace.getConfiguration('reasonSegment').get(key)`.
import type { DeviceChoice } from '../protocol/rpc';

export type OpenResultsIn = 'chat' | 'notebook';

export interface Settings {
  /** Path of the bundle folder (absolute, `~`-expanded, or workspace-relative); '' when none is chosen. */
  model: string;
  /** 'auto' (default): webgpu when the machine and the bundle allow it, else cpu, saying why. */
  device: DeviceChoice;
  allowFallback: boolean;
  maxNewTokens: number;
  cacheSizeMB: number;
  overlayOpacity: number;
  openResultsIn: OpenResultsIn;
  /** Bundles the user added (Add Model), offered by Select Model. */
  models: string[];
  /** Text every answer starts with (SegmentParams.assistantPrefix); '' for none. */
  assistantPrefix: string;
  /** URL of a `reason-segment serve` that answers instead of the local host; '' for the local host. */
  server: string;
}

export const DEFAULTS: Settings = {
  model: '',
  device: 'auto',
  allowFallback: true,
  maxNewTokens: 512,
  cacheSizeMB: 2048,
  overlayOpacity: 0.5,
  openResultsIn: 'chat',
  models: [],
  assistantPrefix: '',
  server: '',
};

const DEVICES: readonly DeviceChoice[] = ['auto', 'cpu', 'cuda', 'webgpu'];

function num(v: unknown, def: number, min: number, max: number, integer = false): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n)) return def;
  const c = Math.min(max, Math.max(min, n));
  return integer ? Math.round(c) : c;
}

export function readSettings(get: (key: string) => unknown): Settings {
  const device = get('device');
  const open = get('openResultsIn');
  const model = get('model');
  const models = get('models');
  return {
    model: typeof model === 'string' ? model.trim() : '',
    device: DEVICES.includes(device as DeviceChoice) ? (device as DeviceChoice) : DEFAULTS.device,
    allowFallback:
      typeof get('allowFallback') === 'boolean' ? (get('allowFallback') as boolean) : DEFAULTS.allowFallback,
    maxNewTokens: num(get('maxNewTokens'), DEFAULTS.maxNewTokens, 1, 4096, true),
    cacheSizeMB: num(get('cacheSizeMB'), DEFAULTS.cacheSizeMB, 0, 1 << 20, true),
    overlayOpacity: num(get('overlayOpacity'), DEFAULTS.overlayOpacity, 0, 1),
    openResultsIn: open === 'notebook' ? 'notebook' : 'chat',
    server: typeof get('server') === 'string' ? (get('server') as string).trim() : '',
    assistantPrefix:
      typeof get('assistantPrefix') === 'string' ? (get('assistantPrefix') as string).slice(0, 10_000) : '',
    models: Array.isArray(models)
      ? [...new Set(models.filter((m): m is string => typeof m === 'string' && m.trim() !== '').map((m) => m.trim()))]
      : [],
  };
}

/**
 * Resolves the model setting to an absolute path: `~` is the home folder; a relative path is relative to the first
 * workspace folder (undefined when there is none).
 */
export function resolveModelPath(
  model: string,
  home: string,
  workspaceFolder: string | undefined,
  join: (...p: string[]) => string,
  isAbsolute: (p: string) => boolean,
): string | undefined {
  if (!model) return undefined;
  if (model === '~' || model.startsWith('~/')) return join(home, model.slice(1));
  if (isAbsolute(model)) return model;
  return workspaceFolder ? join(workspaceFolder, model) : undefined;
}

/** True when `child` is `parent` or lies inside it (both absolute, already normalised). */
export function isInside(child: string, parent: string, sep = '/'): boolean {
  const p = parent.endsWith(sep) ? parent : parent + sep;
  return child === parent || child.startsWith(p);
}

/** Most-recent-first list of instructions, without duplicates, at most `max` long. */
export function pushRecent(list: readonly string[], item: string, max = 10): string[] {
  const t = item.trim();
  if (!t) return [...list];
  return [t, ...list.filter((x) => x !== t)].slice(0, max);
}

export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'webp', 'bmp', 'gif', 'tif', 'tiff'] as const;

export function isImagePath(p: string): boolean {
  const m = /\.([A-Za-z]+)$/.exec(p);
  return !!m && (IMAGE_EXTENSIONS as readonly string[]).includes(m[1].toLowerCase());
}
