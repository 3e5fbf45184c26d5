/**
 * Bench helper (http-events): N clients of stoker's event stream in one process.
 *
 * Usage   node sse-clients.mjs URL TOKEN N SECONDS OUT
 * Prints  "ready" once all N streams are open; then for SECONDS records, for every
 *         `task` event each client receives, the delay from the progress write it
 *         carries (the newer of progress.updatedAt and heartbeatAt) to its arrival.
 * Writes  OUT: {clients, connected, events, perClient: [counts], delaysMs: [...]}.
 */
import { writeFileSync } from 'node:fs';

const [url, token, n, seconds, out] = process.argv.slice(2);
const N = Number(n);
const delays = [];
const counts = new Array(N).fill(0);
let connected = 0;

async function client(i, signal) {
  const res = await fetch(`${url}/api/v1/events`, {
    headers: { authorization: `Bearer ${token}` },
    signal,
  });
  if (res.status !== 200) throw new Error(`client ${i}: HTTP ${res.status}`);
  connected++;
  if (connected === N) process.stdout.write('ready\n');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      if (!block.startsWith('event: task')) continue;
      const data = JSON.parse(block.slice(block.indexOf('data: ') + 6));
      const at = Math.max(
        Date.parse(data.progress.updatedAt ?? 0) || 0,
        Date.parse(data.progress.heartbeatAt ?? 0) || 0,
      );
      counts[i]++;
      if (at > 0) delays.push(Date.now() - at);
    }
  }
}

const abort = new AbortController();
const all = Array.from({ length: N }, (_, i) => client(i, abort.signal).catch(() => undefined));
setTimeout(
  () => {
    abort.abort();
    writeFileSync(
      out,
      JSON.stringify({
        clients: N,
        connected,
        events: counts.reduce((a, b) => a + b, 0),
        perClient: counts,
        delaysMs: delays,
      }),
    );
    process.exit(0);
  },
  Number(seconds) * 1000,
);
await Promise.all(all);
