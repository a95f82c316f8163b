// An event's waiting room, as the buyer sees it: join (POST /api/events/{id}/queue/), then
// poll GET .../queue/me/ when Retry-After says, until the place is admitted (its admission
// token kept for checkout's Admission-Token header, in this tab until it lapses) or ends.
import { api, ApiError } from './core.js';

const key = (eventId) => `admission:${eventId}`;
const path = (eventId) => `/api/events/${encodeURIComponent(eventId)}/queue/`;
/** States after which polling stops: the place must be joined again (or nothing is left). */
export const FINAL = ['admitted', 'spent', 'expired', 'sold_out'];
/** Refusals after which polling stops too: the room was turned off or removed (tickets are
 *  sold directly), or the event is no longer on sale (canceled). */
export const GONE = ['no_waiting_room', 'event_not_on_sale'];
export const gone = (error) => error instanceof ApiError && error.status === 409 && GONE.includes(error.body?.code);

/** The admission token kept for this event, unless it has lapsed. */
export function admission(eventId) {
  const saved = JSON.parse(sessionStorage.getItem(key(eventId)) || 'null');
  if (!saved || new Date(saved.expires_at).getTime() <= Date.now()) return null;
  return saved;
}

export function forget(eventId) { sessionStorage.removeItem(key(eventId)); }

async function call(url, method) {
  const response = await api(url, { method, raw: true });
  const place = await response.json();
  const retry = Number(response.headers.get('Retry-After'));
  return { place, retry: Number.isFinite(retry) ? retry : 5 };
}

/** Take a place (joining again answers the same place). */
export function join(eventId) { return call(path(eventId), 'POST'); }

/** This account's place, or null when it has none. */
export async function mine(eventId) {
  try {
    return await call(`${path(eventId)}me/`, 'GET');
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** Follow a place: `onPlace(place)` at each answer, the next poll when Retry-After says
 *  (at least half a second, at most two minutes). An admitted place's token is kept.
 *  A failed poll is `onError(error)`, tried again in 5 s unless the room is gone.
 *  Answers a function that stops following. */
export function follow(eventId, first, onPlace, onError) {
  let timer = null;
  let stopped = false;
  const step = ({ place, retry }) => {
    if (stopped) return;
    if (place.status === 'admitted' && place.admission_token) {
      sessionStorage.setItem(key(eventId), JSON.stringify({ token: place.admission_token, expires_at: place.admission_expires_at }));
    }
    onPlace(place);
    if (FINAL.includes(place.status)) return;
    timer = setTimeout(() => {
      mine(eventId).then((next) => (next ? step(next) : onError(new Error('Your place in the waiting room was lost: join again.'))))
        .catch((error) => {
          if (stopped) return;
          onError(error);
          if (!gone(error)) timer = setTimeout(() => step({ place, retry: 5 }), 5000);
        });
    }, Math.min(120, Math.max(0.5, retry)) * 1000);
  };
  step(first);
  return () => { stopped = true; clearTimeout(timer); };
}
