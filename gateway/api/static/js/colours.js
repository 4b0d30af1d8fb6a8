// Person colours: the same base colour per track as the rendered 2D overlay
// (services/renderer/draw.py TRACK_COLOURS, there in BGR; here in RGB), left side lighter,
// right side darker, midline in the base colour. tests/unit/test_web_page.py checks they agree.

export const TRACK_COLOURS_RGB = [
  [0, 140, 255], [255, 200, 0], [80, 220, 80], [220, 80, 220], [255, 60, 60], [60, 200, 200],
];

export function trackColour(trackId) {
  const n = TRACK_COLOURS_RGB.length;
  return TRACK_COLOURS_RGB[((trackId % n) + n) % n];
}

/** {left, right, mid} as [r, g, b] 0..255, the overlay's side shading of one track's colour. */
export function sideColours(trackId) {
  const base = trackColour(trackId);
  return {
    left: base.map((v) => Math.trunc(v + (255 - v) * 0.55)),
    right: base.map((v) => Math.trunc(v * 0.6)),
    mid: base.slice(),
  };
}

export function css([r, g, b]) {
  return `rgb(${r}, ${g}, ${b})`;
}

export function hex([r, g, b]) {
  return (r << 16) | (g << 8) | b;
}
