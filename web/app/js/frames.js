// Which decoded frames are new scans: a code counts once while it stays in view, and again
// only after it has been out of view for `goneMs`. Each code is followed on its own, so two
// tickets held up together are not counted over and over as the decoder flips between them.
export function newScans(goneMs) {
  const lastSeen = new Map(); // code -> ms
  return {
    /** A frame decoded at `now` (ms) with `code` (null: none): is it a new scan? */
    frame(code, now) {
      for (const [known, at] of lastSeen) if (now - at > goneMs) lastSeen.delete(known);
      if (!code) return false;
      const fresh = !lastSeen.has(code);
      lastSeen.set(code, now);
      return fresh;
    },
    /** `code` was in view until `now` (while its answer was awaited). */
    stillSeen(code, now) { lastSeen.set(code, now); },
  };
}
