// Status bar item: model, device and host state; clicking it shows the host's status (counters, pid) in the output.
import * as path from 'node:path';
import * as vscode from 'vscode';
import { deviceLabel } from './deviceLabel';
import type { HostManager } from './host';

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    'reasonSegment.status',
    vscode.StatusBarAlignment.Right,
    100,
  );
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly host: HostManager) {
    this.item.name = vscode.l10n.t('Reason Segment');
    this.item.command = 'reasonSegment.showHostStatus';
    this.subs.push(
      host.onDidChangeState(() => this.update()),
      host.onHostEvent(() => this.update()),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('reasonSegment') && this.update()),
    );
    this.update();
    this.item.show();
  }

  private update(): void {
    const s = this.host.settings();
    const m = this.host.model;
    const model = m?.variant ?? (s.model ? path.basename(s.model) : vscode.l10n.t('no model'));
    const label = deviceLabel(m, s.device, (msg, ...args) => vscode.l10n.t(msg, ...args));
    const device = label.text;
    const stateText: Record<string, string> = {
      stopped: vscode.l10n.t('not started'),
      starting: vscode.l10n.t('starting'),
      running: vscode.l10n.t('ready'),
      crashed: vscode.l10n.t('restarting'),
    };
    const icon = this.host.state === 'starting' || this.host.state === 'crashed' ? '$(sync~spin)' : '$(symbol-color)';
    this.item.text = `${icon} ${model} · ${device}`;
    this.item.tooltip = [
      vscode.l10n.t(
        'Reason Segment: {0} on {1}, host {2}. Click for the host status.',
        model,
        device,
        stateText[this.host.state] ?? this.host.state,
      ),
      label.why,
    ]
      .filter(Boolean)
      .join('\n');
  }

  dispose(): void {
    for (const d of this.subs) d.dispose();
    this.item.dispose();
  }
}
