// The scanner's store in IndexedDB: the keys document per event, the check-ins waiting to
// be uploaded, what this device admitted, and the conflicts uploads reported.

const STORES = { keys: 'event_id', queue: 'id', admitted: 'ticket_id', conflicts: 'ticket_id' };
let opened;

function open() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open('gate', 1);
    request.onupgradeneeded = () => {
      for (const [name, keyPath] of Object.entries(STORES)) {
        request.result.createObjectStore(name, name === 'queue' ? { keyPath, autoIncrement: true } : { keyPath });
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

async function run(store, mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const result = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(result && 'result' in result ? result.result : result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const get = (store, key) => run(store, 'readonly', (s) => s.get(key));
export const all = (store) => run(store, 'readonly', (s) => s.getAll());
export const put = (store, value) => run(store, 'readwrite', (s) => s.put(value));
export const remove = (store, keys) => run(store, 'readwrite', (s) => { for (const k of [].concat(keys)) s.delete(k); });
export const count = (store) => run(store, 'readonly', (s) => s.count());

/** A scan admitted offline: queued for upload and remembered as admitted here, atomically. */
export async function admitOffline(scan) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(['queue', 'admitted'], 'readwrite');
    tx.objectStore('queue').add(scan);
    tx.objectStore('admitted').put({ ticket_id: scan.ticket_id, gate: scan.gate, at: scan.scanned_at });
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}
