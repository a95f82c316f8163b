// Offline verification of a ticket code with the keys document of GET /api/scanner/keys/
// (the rules of ticketing/offline.py): Ed25519 by WebCrypto where the browser has it, else
// the vendored @noble/ed25519 (loaded only then).

const B32 = '[0-9abcdefghjkmnpqrstvwxyz]';
const KID = '[A-Za-z0-9][A-Za-z0-9_-]{0,11}';
const PAYLOAD = new RegExp(`^TKT1:(${KID}):(tk_${B32}{20}):(ev_${B32}{20}):()([A-Za-z0-9_-]{86})$`);
// A code re-issued by a transfer: its code version is signed in (ticketing/qr.py, TKT2).
const VERSIONED = new RegExp(`^TKT2:(${KID}):(tk_${B32}{20}):(ev_${B32}{20}):([1-9][0-9]{0,2}):([A-Za-z0-9_-]{86})$`);
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function b64urlDecode(text) {
  const bytes = [];
  let bits = 0; let value = 0;
  for (const ch of text.replace(/=+$/, '')) {
    const index = B64.indexOf(ch);
    if (index < 0) throw new Error('not base64url');
    value = (value << 6) | index; bits += 6;
    if (bits >= 8) { bits -= 8; bytes.push((value >> bits) & 0xff); }
  }
  if (value & ((1 << bits) - 1)) throw new Error('non-canonical base64url'); // stray low bits
  return new Uint8Array(bytes);
}

function message(kid, ticketId, eventId, version) {
  const fields = version
    ? ['ticketing-qr', 'v2', 'kid', kid, 'ticket', ticketId, 'event', eventId, 'version', String(version)]
    : ['ticketing-qr', 'v1', 'kid', kid, 'ticket', ticketId, 'event', eventId];
  return new TextEncoder().encode(fields.join('\0'));
}

let webCryptoWorks; // undefined: not tried yet
let noble;

/** Ed25519 verification; `engine` 'webcrypto' or 'noble' forces one (the tests use it). */
export async function ed25519Verify(publicKey, signature, data, engine) {
  if (engine !== 'noble' && webCryptoWorks !== false) {
    try {
      const key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
      const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, data);
      webCryptoWorks = true;
      return ok;
    } catch (error) {
      if (engine === 'webcrypto' || webCryptoWorks) throw error;
      webCryptoWorks = false; // this browser has no Ed25519 in WebCrypto
    }
  }
  noble ??= await import('../vendor/noble-ed25519.js');
  try {
    return await noble.verifyAsync(signature, data, publicKey, { zip215: false });
  } catch { return false; }
}

/** {valid, reason, ticket_id, event_id} as ticketing.offline.verify_offline answers. */
export async function verifyOffline(doc, code, { eventId, now = new Date(), engine } = {}) {
  const match = PAYLOAD.exec(code || '') || VERSIONED.exec(code || '');
  const bad = { valid: false, reason: 'bad_signature', ticket_id: null, event_id: null };
  if (!match) return bad;
  const [, kid, ticketId, codeEvent, versionText, sigText] = match;
  const version = Number(versionText || 0);
  const publicB64 = doc && doc.keys && doc.keys[kid];
  if (!publicB64) return bad;
  let ok = false;
  try {
    ok = await ed25519Verify(b64urlDecode(publicB64), b64urlDecode(sigText), message(kid, ticketId, codeEvent, version), engine);
  } catch { ok = false; }
  if (!ok) return bad;
  const verdict = (reason) => ({ valid: reason === 'ok', reason, ticket_id: ticketId, event_id: codeEvent });
  const wanted = eventId || doc.event_id;
  if (wanted && wanted !== codeEvent) return verdict('wrong_event');
  // The ticket's latest entry decides; one with a code_version voids the ticket's other
  // codes only (it was transferred: that version admits).
  const entry = (doc.voided || []).filter((v) => v.ticket_id === ticketId).pop();
  if (entry && (entry.code_version == null || entry.code_version !== version)) return verdict('void');
  if (doc.event_ends_at && codeEvent === doc.event_id && now > new Date(doc.event_ends_at)) return verdict('event_over');
  return verdict('ok');
}
