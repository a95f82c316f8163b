// A QR code drawn in the browser from the ticket's qr_payload (vendored uqr), as an SVG
// image large enough to scan from a phone's screen; works offline.
import { renderSVG } from '../vendor/uqr.js';

export function qrImage(payload, label) {
  const svg = renderSVG(payload, { ecc: 'M', border: 4 });
  const img = document.createElement('img');
  img.className = 'qr';
  img.alt = label;
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  return img;
}
