import { test, expect } from '@playwright/test';
import { signup, createProject, registerDemo, recordLive, sseOpen, spawnAPI, screenshot, unique } from './helpers';

// A token made in the dashboard works with the API once, is never shown
// again, and stops working the moment it is revoked.
test('create token → spawn through the API → revoke → 401', async ({ page, request }) => {
  await recordLive(page);
  await signup(page, 'tok');
  await createProject(page, unique('tokens'));
  await registerDemo(page, { maxIdle: 5 });

  await page.getByTestId('tab-tokens').click();
  const name = unique('ci');
  await page.getByTestId('token-form').getByLabel('Name').fill(name);
  await page.getByTestId('token-submit').click();
  const token = (await page.getByTestId('token-value').textContent())!.trim();
  expect(token.length).toBeGreaterThan(20);
  await screenshot(page, 'tokens');
  await page.goto(page.url()); // a fresh GET: reloading would post the form again
  await expect(page.getByTestId('token-once')).toHaveCount(0);
  await expect(page.locator('body')).not.toContainText(token);

  await page.getByTestId('tab-backends').click();
  await sseOpen(page);
  const res = await spawnAPI(request, token);
  expect(res.status()).toBe(201);
  const { id } = await res.json();
  await expect(page.locator(`[data-testid="backend-row"][data-backend="${id}"]`)).toBeVisible();

  await page.getByTestId('tab-tokens').click();
  await expect(page.locator(`[data-testid="token-row"][data-token="${name}"] [data-testid="token-last-used"]`)).not.toHaveText(/never|^$/);
  page.once('dialog', (d) => d.accept());
  await page.locator(`[data-testid="token-row"][data-token="${name}"]`).getByTestId('token-revoke').click();
  await expect(page.getByTestId('flash')).toContainText('revoked');
  const again = await spawnAPI(request, token);
  expect(again.status()).toBe(401);

  await page.getByTestId('tab-activity').click();
  await expect(page.locator('[data-testid="activity-row"][data-action="token.revoke"]')).toHaveCount(1);
  await expect(page.locator('[data-testid="activity-row"][data-action="backend.spawn"]')).toContainText(name);
  await screenshot(page, 'activity');
});
