import { test, expect } from '@playwright/test';

// Proves the plumbing: plane dev started on free ports and answers, and
// Debian's Chromium launches and reaches it.
test('healthz answers ok', async ({ request }) => {
  const res = await request.get('/healthz');
  expect(res.status()).toBe(200);
  expect(await res.json()).toEqual({ status: 'ok' });
});

test('the browser reaches the server', async ({ page }) => {
  const res = await page.goto('/healthz');
  expect(res?.status()).toBe(200);
  await expect(page.locator('body')).toContainText('"status":"ok"');
});

test('the environment names the server', async () => {
  expect(process.env.PLANE_E2E_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(Number(process.env.PLANE_E2E_PROXY_PORT)).toBeGreaterThan(0);
  expect(Number(process.env.PLANE_E2E_DNS_PORT)).toBeGreaterThan(0);
  expect(process.env.PLANE_E2E_DATA).toBeTruthy();
});
