/**
 * Test support (used by test/ and bench/): delete every key under a prefix, which is what
 * a test or a bench run leaves behind in the shared redis-server it ran against.
 *
 * Inputs   the server's URL and the prefix (each test and bench run has its own; glob
 *          characters in it are escaped, so `a*:` deletes only keys that start with `a*:`).
 * Redis    SCAN MATCH <prefix>* COUNT 1000 and one DEL per batch found, on a connection of
 *          its own, closed after. Keys written while it scans may survive (SCAN's guarantee
 *          covers only keys present for the whole scan): call it once the writers stopped.
 */
import { Redis } from 'ioredis';

export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  try {
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}
