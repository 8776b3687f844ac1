// UI text of the browser surfaces (chat panel, overlay controls, notebook renderer) in English and Simplified
// Chinese. The chat panel gets its language from the extension, which writes it into `<html lang>`
// (vscode.env.language); the renderer from navigator.language. English strings are the keys, as with vscode-l10n, and
// {0}, {1} are arguments.

const ZH_CN: Readonly<Record<string, string>> = {
  'Host not started': '推理进程未启动',
  'Host starting…': '推理进程启动中…',
  'Host ready': '推理进程就绪',
  'Host busy': '推理进程忙',
  'Host crashed': '推理进程已崩溃',
  'Reason Segment chat': 'Reason Segment 对话',
  Image: '图像',
  'Choose image…': '选择图像…',
  'Choose an image file to ask about': '选择要提问的图像文件',
  'Drop an image from the Explorer here (hold Shift while dragging)':
    '将资源管理器中的图像拖放到此处（拖动时按住 Shift）',
  'Drop zone for an image file': '图像文件拖放区',
  'That drop held no file path: drag an image from the Explorer (hold Shift), or use Choose image…':
    '拖放的内容中没有文件路径：请从资源管理器拖动图像（按住 Shift），或使用“选择图像…”',
  Conversation: '对话',
  'New conversation': '新对话',
  'Export to notebook': '导出到笔记本',
  Ask: '提问',
  'Ask about the image': '针对图像提问',
  'Ask about the image (Enter to send, Shift+Enter for a new line)': '针对图像提问（Enter 发送，Shift+Enter 换行）',
  Stop: '停止',
  'Stop the answer (Esc)': '停止回答（Esc）',
  Send: '发送',
  'No image chosen': '未选择图像',
  'Thumbnail of {0}': '{0} 的缩略图',
  'Choose an image (button above, drag and drop, or "Segment Image…" in the Explorer), then ask about it.':
    '先选择图像（上方按钮、拖放，或资源管理器中的“分割图像…”），然后提问。',
  'Ask about the image: for example "Segment the object a driver reads the speed from."':
    '针对图像提问，例如：“分割出司机读取车速的物体。”',
  'Choose an image first.': '请先选择图像。',
  'Answering… (Esc to stop)': '正在回答…（Esc 停止）',
  You: '你',
  'Reason Segment': 'Reason Segment',
  'Answer, streaming': '回答（生成中）',
  'The masks cannot be shown: {0}': '无法显示掩码：{0}',
  '{0} mask(s); the image is loading…': '{0} 个掩码；图像加载中…',
  'No masks': '没有掩码',
  '1 mask': '1 个掩码',
  '{0} masks': '{0} 个掩码',
  'image encoders skipped (cached)': '已跳过图像编码器（缓存）',
  'Stopped.': '已停止。',
  'The answer failed.': '回答失败。',
  Retry: '重试',
  "The {0} oldest turn(s) were left out so that this one fits the model's context.":
    '为使本轮对话放得进模型的上下文，省略了最早的 {0} 轮。',
  'Retry: {0}': '重试：{0}',
  'Waiting for the host…': '等待推理进程…',
  // The overlay (src/overlay/view.ts), shared by this panel and the notebook renderer.
  'Segmentation result: {0} mask(s)': '分割结果：{0} 个掩码',
  'Mask {0}': '掩码 {0}',
  View: '视图',
  Fill: '填充',
  Outline: '轮廓',
  'Bounding box': '边界框',
  'Mask opacity': '掩码不透明度',
  Opacity: '不透明度',
  'Image {0} with masks': '带掩码的图像 {0}',
  'Image with masks': '带掩码的图像',
  'No mask for this [SEG]': '此 [SEG] 没有掩码',
  Masks: '掩码',
  'Save mask PNG': '保存掩码 PNG',
  'Save mask {0} as PNG': '将掩码 {0} 保存为 PNG',
  'Save COCO JSON': '保存 COCO JSON',
  'Save overlay PNG': '保存叠加图 PNG',
  'Some masks could not be drawn': '部分掩码无法绘制',
  'not decodable': '无法解码',
  visible: '可见',
  hidden: '隐藏',
  'Mask {0} of {1}: {2}': '掩码 {0}/{1}：{2}',
  '[SEG] {0}: mask {0}, {1}': '[SEG] {0}：掩码 {0}，{1}',
  'The image is not embedded in this result; masks are shown on a blank background.':
    '此结果未内嵌图像；掩码显示在空白背景上。',
  'The embedded image is {0}x{1}; the masks are {2}x{3}. It is stretched to fit.':
    '内嵌图像为 {0}x{1}，掩码为 {2}x{3}，已拉伸以适应。',
  'The image could not be decoded': '无法解码图像',
  'This Reason Segment result cannot be shown': '无法显示此 Reason Segment 结果',
  'Download {0}': '下载 {0}',
  // Refining a mask by clicking (src/overlay/refine.ts).
  Refine: '细化',
  'Refine mask {0} by clicking': '通过点击细化掩码 {0}',
  'Refining mask {0}: click to add a point, Shift- or Alt-click for a negative point, drag for a box.':
    '正在细化掩码 {0}：单击添加正向点，按住 Shift 或 Alt 单击添加负向点，拖动画框。',
  Undo: '撤销',
  Redo: '重做',
  'Clear points': '清除所有点',
  Done: '完成',
  'Refining…': '正在细化…',
  'Refine failed: {0}': '细化失败：{0}',
  'At most 32 points.': '最多 32 个点。',
  // Refining in JupyterLab, through the notebook's kernel (src/renderer/jupyterlab/kernel.ts).
  'This output has no running kernel: run the cell again to refine its masks.':
    '此输出没有正在运行的内核：请重新运行该单元格，再细化其掩码。',
  'The kernel has no %%segment magic loaded: run %load_ext reason_segment and the cell again.':
    '内核未加载 %%segment 魔法命令：请运行 %load_ext reason_segment，再重新运行该单元格。',
  'predicted IoU {0}': '预测 IoU {0}',
  'refined ({0} point(s){1})': '已细化（{0} 个点{1}）',
  ', box': '，框',
  "SAM's predicted IoU is the mask decoder's own estimate of the mask's quality (its confidence).":
    'SAM 的预测 IoU 是掩码解码器对掩码质量的自我估计（即置信度）。',
  'Open beside': '在旁边打开',
  'Open this result beside the image': '在图像旁打开此结果',
  'Reason Segment result': 'Reason Segment 结果',
  Zoom: '缩放',
  'Zoom out (-)': '缩小 (-)',
  'Zoom in (+)': '放大 (+)',
  Fit: '适应',
  'Fit the image to the panel (0)': '使图像适应面板 (0)',
  'zoomable image': '可缩放图像',
  'Image with masks: + and - zoom, 0 fits, arrow keys pan; drag to pan, wheel to zoom':
    '带掩码的图像：+ 和 - 缩放，0 适应，方向键平移；拖动平移，滚轮缩放',
  'Answer and masks': '回答与掩码',
  'Waiting for a result…': '正在等待结果…',
  'Zoom {0}% of the image size': '缩放：图像原始尺寸的 {0}%',
  'answer {0} of {1}': '第 {0} 个回答，共 {1} 个',
};

export type { Translate } from './view';

import type { Translate } from './view';

export function translator(lang: string | null | undefined): Translate {
  const table = /^zh(-cn|-hans|$)/i.test(lang ?? '') ? ZH_CN : undefined;
  return (message, ...args) => {
    const s = table?.[message] ?? message;
    return args.length
      ? s.replace(/\{(\d+)\}/g, (m, i: string) => (args[Number(i)] !== undefined ? String(args[Number(i)]) : m))
      : s;
  };
}
