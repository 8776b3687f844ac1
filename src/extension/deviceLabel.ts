// What the status bar says about the device: the provider that runs the model and, when cpu runs instead of the
// device asked for (or tried by 'auto'), a short reason, with the host's full line in the tooltip. Never imports
// vscode: the caller passes its translator.
import type { DeviceChoice, DeviceFallback, ModelInfo } from '../protocol/rpc';
import type { Translate } from './hostStatus';

const SHORT: Record<DeviceFallback['reason'], string> = {
  'no-vulkan-loader': 'no Vulkan loader',
  'no-adapter': 'no GPU adapter',
  'adapter-too-small': 'GPU too small for the model',
  'bundle-not-for-device': 'model not exported for it',
  'provider-missing': 'provider not installed',
  'provider-failed': 'failed to start',
};

/** The device part of the status bar's text, and the tooltip line that explains a fallback. */
export function deviceLabel(
  model: ModelInfo | undefined,
  setting: DeviceChoice,
  t: Translate,
): { text: string; why?: string } {
  if (!model) return { text: setting };
  const f = model.fallback;
  if (!f) return { text: model.requestedDevice === 'auto' ? t('{0} (auto)', model.provider) : model.provider };
  return {
    text: t('{0} ({1}: {2})', model.provider, f.device, t(SHORT[f.reason])),
    why: t('Not on {0}: {1}.', f.device, f.message),
  };
}
