// The shared mask-drawing module (browser, DOM only): used by the notebook renderer and the chat panel.
export { createSegmentView, errorBox, type SegmentView, type SaveFile, type ViewMode, type ViewOptions } from './view';
export { checkResult, type Checked } from './validate';
export { maskColor, cssColor, textOn, type Rgb } from './colors';
export { MaskLayer, hitTest, outlineBand, outlineThickness, packRgba } from './layers';
export { ensureStyles, OVERLAY_CSS, STYLE_ID } from './styles';
