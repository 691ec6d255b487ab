import { test, expect, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// assets/static/app.js on its own: a page served by page.route from the
// embedded files, so these tests need no dashboard view.
const origin = 'http://plane.test';
const staticDir = join(__dirname, '..', '..', 'assets', 'static');

async function open(page: Page, body: string) {
  await page.route(`${origin}/**`, async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/') {
      return route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><html><head>
<meta name="csrf-token" content="tok-123">
<link rel="stylesheet" href="/plane.css">
<script defer src="/htmx.min.js"></script>
<script defer src="/app.js"></script>
</head><body>${body}</body></html>`,
      });
    }
    const file = path.slice(1);
    if (/^[\w.-]+$/.test(file)) {
      try {
        return route.fulfill({
          contentType: file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'application/octet-stream',
          body: readFileSync(join(staticDir, file)),
        });
      } catch {}
    }
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => (window as any).htmx !== undefined);
}

// Where data-confirm sits: on the form, on its submit button, or on a link.
for (const { name, body } of [
  { name: 'a form', body: `<form data-confirm="Really?" action="/done" method="get"><button id="go">Go</button></form>` },
  { name: 'a submit button', body: `<form action="/done" method="get"><button id="go" data-confirm="Really?">Go</button></form>` },
  { name: 'a link', body: `<a id="go" href="/done" data-confirm="Really?">Go</a>` },
]) {
  test(`data-confirm on ${name} asks, and a decline cancels it`, async ({ page }) => {
    await open(page, body);
    let asked = '';
    page.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
    await page.click('#go');
    await page.waitForTimeout(300);
    expect(asked).toBe('Really?');
    expect(new URL(page.url()).pathname).toBe('/');

    page.once('dialog', (d) => d.accept());
    await page.click('#go');
    await page.waitForURL(/\/done/);
  });
}

test('data-since and data-until count', async ({ page }) => {
  await open(page, `<span id="a"></span><span id="b"></span><span id="c"></span><span id="d"></span>`);
  await page.evaluate(() => {
    const at = (ms: number) => new Date(Date.now() + ms).toISOString();
    document.getElementById('a')!.setAttribute('data-since', at(-3_000));
    document.getElementById('b')!.setAttribute('data-since', at(-125_000));
    document.getElementById('c')!.setAttribute('data-until', at(12_000));
    document.getElementById('d')!.setAttribute('data-until', at(-5_000));
  });
  // Added after load, so this also shows the per-second re-scan.
  await expect(page.locator('#a')).toHaveText(/^[3-6] s ago$/);
  await expect(page.locator('#b')).toHaveText('2 min ago');
  await expect(page.locator('#c')).toHaveText(/^(9|10|11|12) s$/);
  await expect(page.locator('#d')).toHaveText('0 s');
});

test('data-copy copies and says so', async ({ page }) => {
  await open(page, `<div class="token-once"><code id="tok">secret-token</code><button id="cp" class="btn" data-copy="#tok">Copy</button></div>`);
  await page.evaluate(() => {
    // Record what is copied whichever path app.js takes.
    (window as any).copied = '';
    document.addEventListener('copy', () => { (window as any).copied = String(window.getSelection()); });
    if (navigator.clipboard) {
      navigator.clipboard.writeText = async (t: string) => { (window as any).copied = t; };
    }
  });
  await page.click('#cp');
  await expect(page.locator('#cp')).toHaveText('Copied');
  expect(await page.evaluate(() => (window as any).copied)).toBe('secret-token');
  await expect(page.locator('#cp')).toHaveText('Copy', { timeout: 5_000 });
});

test('htmx requests carry the CSRF token', async ({ page }) => {
  await open(page, `<button id="b" hx-post="/x" hx-swap="outerHTML">Post</button>`);
  // Registered after open's catch-all: the later route wins.
  let token: string | undefined;
  await page.route(`${origin}/x`, (route) => {
    token = route.request().headers()['x-csrf-token'];
    return route.fulfill({ contentType: 'text/html', body: '<span id="swapped">ok</span>' });
  });
  await page.click('#b');
  await expect(page.locator('#swapped')).toHaveText('ok');
  expect(token).toBe('tok-123');
});

test('data-autoscroll follows appended output unless scrolled up', async ({ page }) => {
  const lines = Array.from({ length: 60 }, (_, i) => `line ${i}`).join('\n');
  await open(page, `<pre id="log" class="logs" data-autoscroll>${lines}</pre>`);
  const atBottom = () => page.evaluate(() => {
    const el = document.getElementById('log')!;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 2;
  });
  const append = () => page.evaluate(() => {
    const el = document.getElementById('log')!;
    el.append('\nmore\nmore\nmore');
  });
  await expect.poll(atBottom).toBe(true);
  await append();
  await expect.poll(atBottom).toBe(true);

  await page.evaluate(() => { document.getElementById('log')!.scrollTop = 0; });
  await page.waitForTimeout(100);
  await append();
  await page.waitForTimeout(300);
  expect(await page.evaluate(() => document.getElementById('log')!.scrollTop)).toBe(0);
});
