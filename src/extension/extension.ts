// Entry point (bundled by esbuild.mjs to dist/extension.js). Activation only registers things: no host process, no
// model. The host starts on the first request that needs it (see host.ts). Activation time is logged to the
// "Reason Segment" output channel ("activated in N ms").
import * as vscode from 'vscode';
import { validateWebviewMessage } from '../protocol/chat';
import { ChatViewProvider } from './chatView';
import { HostManager, SERVER_TOKEN_SECRET } from './host';
import { formatHostStatus, type HostStatusItem } from './hostStatus';
import { saveFileWithDialog } from './imageFiles';
import { applyKernelEnvironment, enableKernelMagic } from './kernel';
import { addModel, selectModel, watchModelSettings } from './models';
import { exportConversation, openResultNotebook } from './notebookExport';
import { ResultPanels } from './resultPanel';
import { pushRecent } from './settings';
import { StatusBar } from './statusBar';

const t0 = performance.now();
const RECENT_KEY = 'reasonSegment.recentInstructions';
let statusSeq = 0;
export const RENDERER_ID = 'reason-segment.renderer';

export interface ExtensionApi {
  activationMs: number;
  host: HostManager;
}

export function activate(context: vscode.ExtensionContext): ExtensionApi {
  const log = vscode.window.createOutputChannel('Reason Segment');
  const hostLog = vscode.window.createOutputChannel('Reason Segment Host');
  const host = new HostManager(context, hostLog, log);
  const results: ResultPanels = new ResultPanels(
    context.extensionUri,
    log,
    (p) => host.refine(p),
    // chat is assigned below, before any panel can open
    { webviewImage: (image) => chat.controller.webviewImage(image), receive: (m) => chat.controller.receive(m) },
  );
  const chat: ChatViewProvider = new ChatViewProvider(
    context,
    host,
    log,
    (c, overlays) => exportConversation(c, new Map(overlays)).then(() => undefined),
    (c, turnId) => results.show(c, turnId),
  );
  const status = new StatusBar(host);
  context.subscriptions.push(
    log,
    hostLog,
    host,
    chat,
    results,
    status,
    watchModelSettings(host),
    chat.controller.onTurnDone((c, t) => results.follow(c, t)),
  );
  context.subscriptions.push(
    vscode.window.registerWebviewViewProvider(ChatViewProvider.viewId, chat, {
      webviewOptions: { retainContextWhenHidden: true },
    }),
  );

  const cmd = (id: string, f: (...a: any[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, f));

  cmd('reasonSegment.segmentImage', async (uri?: vscode.Uri) => {
    const target = uri instanceof vscode.Uri ? uri : await activeImage();
    if (!target) return;
    const recent = context.globalState.get<string[]>(RECENT_KEY, []);
    const prompt = await askInstruction(recent);
    if (!prompt) return;
    await context.globalState.update(RECENT_KEY, pushRecent(recent, prompt));
    const where = host.settings().openResultsIn;
    if (where === 'notebook') {
      const result = await vscode.window
        .withProgress(
          {
            location: vscode.ProgressLocation.Notification,
            title: vscode.l10n.t('Reason Segment: segmenting {0}', target.path.split('/').pop() ?? ''),
            cancellable: true,
          },
          (_p, token) =>
            host.segment(
              {
                requestId: `nb-${Date.now()}`,
                image: { path: target.fsPath },
                prompt,
                history: [],
                includeOverlay: true,
                includeImage: true,
              },
              token,
            ),
        )
        .then(undefined, (e) => {
          void vscode.window.showErrorMessage((e as Error).message);
          return undefined;
        });
      if (result) await openResultNotebook(target.fsPath, prompt, result);
      return;
    }
    await chat.segmentFile(target, prompt);
  });
  cmd('reasonSegment.selectModel', selectModel);
  cmd('reasonSegment.addModel', addModel);
  cmd('reasonSegment.restartHost', async () => {
    try {
      await host.restart();
      void vscode.window.showInformationMessage(vscode.l10n.t('The Reason Segment host was restarted.'));
    } catch (e) {
      void vscode.window.showErrorMessage(vscode.l10n.t('The host could not be started: {0}', (e as Error).message));
    }
  });
  cmd('reasonSegment.showHostLog', () => hostLog.show(true));
  cmd('reasonSegment.setServerToken', async () => {
    const value = await vscode.window.showInputBox({
      prompt: vscode.l10n.t('Bearer token of the Reason Segment server (empty to forget it)'),
      password: true,
      ignoreFocusOut: true,
    });
    if (value === undefined) return;
    if (value.trim()) await context.secrets.store(SERVER_TOKEN_SECRET, value.trim());
    else await context.secrets.delete(SERVER_TOKEN_SECRET);
  });
  cmd('reasonSegment.showHostStatus', async () => {
    const s = await host.status().catch((e) => ({ error: (e as Error).message }));
    const report = { hostState: host.state, starts: host.starts, status: s };
    const items = formatHostStatus(report, (m, ...a) => vscode.l10n.t(m, ...a));
    log.appendLine(vscode.l10n.t('Reason Segment host status:'));
    for (const i of items) log.appendLine(`  ${i.label}: ${i.detail}`);
    // The same as data, for bug reports and the end-to-end tests: the extension's log folder, not shown to the user.
    const data = { seq: ++statusSeq, ...report, activationMs: Math.round(activationMs), status: s ?? null };
    // Written aside and renamed, so that a reader never sees half a file.
    const file = vscode.Uri.joinPath(context.logUri, 'host-status.json');
    const part = vscode.Uri.joinPath(context.logUri, 'host-status.json.part');
    await vscode.workspace.fs
      .writeFile(part, Buffer.from(JSON.stringify(data, null, 1)))
      .then(() => vscode.workspace.fs.rename(part, file, { overwrite: true }))
      .then(undefined, (e) => log.appendLine(`[status] could not write host-status.json: ${(e as Error).message}`));
    void showStatusPick(items, hostLog);
    return s;
  });
  cmd('reasonSegment.enableKernelMagic', () => enableKernelMagic(context));
  cmd('reasonSegment.exportNotebook', () => {
    const c = chat.active();
    if (!c) return exportConversation(undefined, new Map());
    const [conversation, overlays] = chat.controller.forExport(c);
    return exportConversation(conversation, overlays);
  });
  cmd('reasonSegment.openChat', () => vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`));
  // The walkthrough in the whole editor area: VS Code's own Chat (the secondary side bar) can open at start-up beside
  // it and squeeze its text into a narrow column. Extensions cannot keep Chat from opening; this closes the secondary
  // side bar only when the user asks, from the walkthrough's first step or the palette.
  cmd('reasonSegment.openWalkthrough', async () => {
    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
    await vscode.commands.executeCommand(
      'workbench.action.openWalkthrough',
      `${context.extension.id}#reasonSegment.start`,
      false,
    );
  });
  cmd('reasonSegment.openResult', async () => {
    const c = chat.active();
    const last = c && [...c.turns].reverse().find((t) => t.status === 'done' && t.result);
    if (!c || !last) {
      void vscode.window.showInformationMessage(
        vscode.l10n.t('No answer with a result yet: ask about an image first.'),
      );
      return;
    }
    await results.show(c, last.id);
  });

  // Saves from the notebook renderer: validated like the chat panel's save message before anything is written.
  const messaging = vscode.notebooks.createRendererMessaging(RENDERER_ID);
  context.subscriptions.push(
    messaging.onDidReceiveMessage(async (e) => {
      const m = e.message as Record<string, unknown> | null;
      const problems =
        m && typeof m === 'object' && m.type === 'save'
          ? validateWebviewMessage({ ...m, conversationId: 'notebook', turnId: 'output' })
          : ['not a save message'];
      if (problems.length) {
        log.appendLine(`[renderer] ignored an invalid message: ${problems.slice(0, 3).join('; ')}`);
        return;
      }
      try {
        await saveFileWithDialog(m as unknown as Parameters<typeof saveFileWithDialog>[0]);
      } catch (err) {
        void vscode.window.showErrorMessage((err as Error).message);
      }
    }),
  );

  // Terminals (and kernels started from them) can find the host for the %%segment magic.
  applyKernelEnvironment(context);

  const activationMs = performance.now() - t0;
  log.appendLine(`[activation] activated in ${activationMs.toFixed(1)} ms (host not started, no model loaded)`);
  return { activationMs, host };
}

export function deactivate(): void {
  /* HostManager.dispose (in subscriptions) stops the host */
}

async function activeImage(): Promise<vscode.Uri | undefined> {
  const tab = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  if (tab instanceof vscode.TabInputCustom || tab instanceof vscode.TabInputText) return tab.uri;
  const picked = await vscode.window.showOpenDialog({
    canSelectMany: false,
    openLabel: vscode.l10n.t('Segment'),
    filters: { [vscode.l10n.t('Images')]: ['png', 'jpg', 'jpeg', 'webp', 'bmp', 'gif', 'tif', 'tiff'] },
  });
  return picked?.[0];
}

/** The host status at a glance: one row per item, then what one can do about it. */
async function showStatusPick(items: HostStatusItem[], hostLog: vscode.OutputChannel): Promise<void> {
  const icons = ['$(server-process)', '$(symbol-namespace)', '$(pulse)'];
  type Row = vscode.QuickPickItem & { run?: () => unknown };
  const rows: Row[] = [
    ...items.map((i, k) => ({ label: `${icons[k] ?? '$(info)'} ${i.label}`, detail: i.detail })),
    { label: '', kind: vscode.QuickPickItemKind.Separator },
    { label: `$(output) ${vscode.l10n.t('Show Host Log')}`, run: () => hostLog.show(true) },
    {
      label: `$(debug-restart) ${vscode.l10n.t('Restart Host')}`,
      run: () => vscode.commands.executeCommand('reasonSegment.restartHost'),
    },
  ];
  const picked = await vscode.window.showQuickPick(rows, { title: vscode.l10n.t('Reason Segment host status') });
  await picked?.run?.();
}

/** An input box with the recent instructions offered as quick picks (typing a new one works too). */
function askInstruction(recent: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    const qp = vscode.window.createQuickPick();
    qp.title = vscode.l10n.t('Segment Image');
    qp.placeholder = vscode.l10n.t('What should be segmented? e.g. "the animal someone could pet"');
    qp.ignoreFocusOut = true;
    const recentItems = recent.map((r) => ({ label: r, description: vscode.l10n.t('recent') }));
    qp.items = recentItems;
    qp.onDidChangeValue((v) => {
      qp.items = v.trim() ? [{ label: v, alwaysShow: true }, ...recentItems.filter((i) => i.label !== v)] : recentItems;
    });
    let done = false;
    qp.onDidAccept(() => {
      done = true;
      const value = qp.selectedItems[0]?.label ?? qp.value;
      qp.hide();
      resolve(value?.trim() || undefined);
    });
    qp.onDidHide(() => {
      if (!done) resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
}
