import { test, expect } from '@playwright/test';
import { signup, createProject, registerDemo, recordLive, statuses, sseOpen, screenshot, unique } from './helpers';

// The whole life of a backend, driven from the dashboard: spawn, watch it
// come up live, open it, use a WebSocket in it, close it and watch it stop
// when idle, all without a reload.
test('spawn → ready → open → WebSocket → close → idle stop', async ({ page, context }) => {
  await recordLive(page);
  await signup(page, 'ada');
  await screenshot(page, 'projects');
  await createProject(page, unique('life'));
  // The demo waits before it answers, so "ready" comes after the page has
  // loaded and can only arrive live.
  await registerDemo(page, { maxIdle: 8, env: 'DEMO_READY_DELAY_MS=1500' });
  await screenshot(page, 'images');

  await page.getByTestId('tab-backends').click();
  await page.getByTestId('spawn-submit').click();
  await expect(page.getByTestId('flash')).toContainText('spawned');
  const row = page.getByTestId('backend-row').first();
  await expect(row.getByTestId('backend-status')).toHaveText('ready', { timeout: 30_000 });
  const seen = await statuses(page);
  expect(seen[seen.length - 1]).toBe('ready');
  expect(seen.length, `statuses seen live: ${seen.join(' → ')}`).toBeGreaterThan(1);
  await screenshot(page, 'backends');

  await row.getByTestId('backend-link').click();
  await expect(page.getByTestId('backend-status')).toHaveText('ready');
  await sseOpen(page);
  const [app] = await Promise.all([context.waitForEvent('page'), page.getByTestId('open-backend').click()]);
  await expect(app.getByRole('heading', { name: 'Plane demo' })).toBeVisible();
  await expect(app.getByTestId('ws-echo')).toHaveText('ping');
  await expect(page.getByTestId('connections')).not.toHaveText('0');
  await app.close();

  await expect(page.getByTestId('connections')).toHaveText('0');
  await expect(page.getByTestId('idle-countdown')).toContainText(/Stops in \d+ s when idle/);
  await screenshot(page, 'backend');
  await expect(page.getByTestId('backend-status')).toHaveText('terminated (idle)', { timeout: 30_000 });
  await expect(page.getByTestId('termination-reason')).toHaveText('idle');
  expect(await statuses(page)).toContain('terminated (idle)'); // live: no reload in between
});
