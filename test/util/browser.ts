/** Debian's chromium for the browser tests (driven by playwright-core; .ci/run installs it). */
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Where the browser tests save their screenshots (gitignored). */
export const SHOTS = join(import.meta.dirname, '..', '..', 'test-output', 'browser');

/** Headless chromium, sandbox off (containers, root), nothing fetched from outside. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
