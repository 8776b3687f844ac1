// The shared mask-drawing module (browser, DOM only): used by the notebook renderer and the chat panel.

export { cssColor, maskColor, type Rgb, textOn } from './colors';
export { hitTest, MaskLayer, outlineBand, outlineThickness, packRgba } from './layers';
export type { RefineCallback, RefineMode, RefineRequest } from './refine';
export { ensureStyles, OVERLAY_CSS, STYLE_ID } from './styles';
export { type Checked, checkResult } from './validate';
export { createSegmentView, errorBox, type SaveFile, type SegmentView, type ViewMode, type ViewOptions } from './view';
