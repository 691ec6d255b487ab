import { test, expect } from '@playwright/test';
import { signup, createProject, registerDemo, sseOpen, recordLive, screenshot, unique } from './helpers';

// Two users open the same backend, each in a browser of their own with a
// connect URL naming them; the project member watching the backend's page
// sees both, live, then one fewer once a browser closes.
test('connected users: two join, one leaves, live on the backend page', async ({ page, browser, request }) => {
  await recordLive(page);
  await signup(page, 'watch');
  await createProject(page, unique('conns'));
  await registerDemo(page, { maxIdle: 20 });

  // A token for the API: the connect URLs name their users.
  await page.getByTestId('tab-tokens').click();
  await page.getByTestId('token-form').getByLabel('Name').fill(unique('conns'));
  await page.getByTestId('token-submit').click();
  const token = (await page.getByTestId('token-value').textContent())!.trim();
  const auth = { Authorization: `Bearer ${token}` };

  const spawn = await request.post('/api/v1/backends', { headers: auth, data: { image: 'demo', wait: true } });
  expect(spawn.status()).toBe(201);
  const backend = await spawn.json();
  expect(backend.status).toBe('ready');

  await page.goto(`${new URL(page.url()).pathname.replace(/\/tokens$/, '')}/backends/${backend.id}`);
  await expect(page.getByTestId('backend-status')).toHaveText('ready');
  await sseOpen(page);
  await expect(page.getByTestId('no-connected-users')).toBeVisible();
  // Marks this document: a reload would lose it.
  await page.evaluate(() => { (window as any).__sameDocument = true; });

  const users = ['alice', 'bob'];
  const contexts = [];
  for (const user of users) {
    const res = await request.post(`/api/v1/backends/${backend.id}/connect`, { headers: auth, data: { user } });
    expect(res.status()).toBe(200);
    const { url } = await res.json();
    const ctx = await browser.newContext();
    contexts.push(ctx);
    const app = await ctx.newPage();
    await app.goto(url);
    await expect(app.getByRole('heading', { name: 'Plane demo' })).toBeVisible();
    await expect(app.getByTestId('ws-echo')).toHaveText('ping'); // a WebSocket stays open
  }

  const rows = page.getByTestId('connected-user');
  await expect(rows).toHaveCount(2, { timeout: 5_000 });
  await expect(page.locator('[data-testid="connected-user"][data-user="alice"]')).toBeVisible();
  await expect(page.locator('[data-testid="connected-user"][data-user="bob"]')).toBeVisible();
  await screenshot(page, 'backend-connections');

  // Closing bob's browser closes his sockets: he leaves after the drone's
  // debounce.
  await contexts[1].close();
  await expect(rows).toHaveCount(1, { timeout: 15_000 });
  await expect(rows).toHaveAttribute('data-user', 'alice');
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true); // live: no reload

  await contexts[0].close();
  await expect(page.getByTestId('no-connected-users')).toBeVisible({ timeout: 15_000 });
});
