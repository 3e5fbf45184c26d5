/**
 * Stoker's dashboard: a single page served at / by the controller's HTTP server, built
 * by esbuild (scripts/bundle.mjs) into dist/dashboard. Routes in the URL's fragment:
 *   #/            runs (runs-page.ts)
 *   #/runs/ID     one run (run-page.ts)
 *   #/pools       pools (pools-page.ts)
 * and Bull Board at /queues (served by the same server, behind the same login).
 * Without a valid login cookie the page asks for a token and logs in through /login.
 */
import './style.css';
import { myRole, whenUnauthorized } from './api.js';
import { fill, h } from './dom.js';
import { whenStreamState } from './live.js';
import { poolsPage } from './pools-page.js';
import { runPage } from './run-page.js';
import { runsPage } from './runs-page.js';

const main = document.getElementById('main') as HTMLElement;
const who = document.getElementById('who') as HTMLElement;
const stream = document.getElementById('stream') as HTMLElement;
let leave: (() => void) | null = null;

function loginForm(): void {
  leave?.();
  leave = null;
  const input = h('input', {
    type: 'password',
    name: 'token',
    placeholder: 'token',
    autocomplete: 'off',
    'aria-label': 'token',
  });
  const next = h('input', { type: 'hidden', name: 'next', value: '/' });
  fill(
    main,
    h('h1', {}, 'Log in'),
    h('p', {}, 'Paste a token (stoker up prints a login link and where the tokens are kept).'),
    h(
      'form',
      { method: 'get', action: '/login', class: 'login' },
      input,
      next,
      h('button', { type: 'submit' }, 'log in'),
    ),
  );
}

function route(): void {
  leave?.();
  leave = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  for (const a of document.querySelectorAll('nav a[data-nav]'))
    a.classList.toggle('current', hash.startsWith((a as HTMLElement).dataset.nav ?? '\u0000'));
  const run = /^\/runs\/([^/]+)$/.exec(hash);
  if (run) leave = runPage(main, decodeURIComponent(run[1] as string));
  else if (hash === '/pools') leave = poolsPage(main);
  else leave = runsPage(main);
}

async function start(): Promise<void> {
  whenUnauthorized(loginForm);
  whenStreamState((s) => {
    stream.textContent = s === 'live' ? '● live' : '○ reconnecting';
    stream.className = s;
  });
  const role = await myRole();
  if (!role) return loginForm();
  who.textContent = role === 'admin' ? 'admin' : 'read-only';
  document.body.dataset.role = role;
  window.addEventListener('hashchange', route);
  route();
}

void start();
