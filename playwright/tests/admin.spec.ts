import { test, expect } from '@playwright/test';
import { admin, ensureAdmin, login, createProject, registerDemo, screenshot, unique } from './helpers';

// An admin drains the drone: spawns fail with a clear message until the
// drone is undrained.
test('drones page: fresh heartbeat, drain, undrain', async ({ page }) => {
  ensureAdmin();
  await login(page, admin.email, admin.password);
  await expect(page).toHaveURL(/\/projects/);
  await createProject(page, unique('ops'));
  await registerDemo(page, { maxIdle: 5 });
  const backends = page.url().replace(/\/images.*$/, '/backends');

  await page.getByTestId('nav-admin').click();
  await expect(page).toHaveURL(/\/admin\/drones/);
  const drone = page.getByTestId('drone-row').first();
  await expect(drone.getByTestId('drone-status')).toHaveText('ready');
  await expect(drone.getByTestId('heartbeat-age')).toHaveText(/^\d s ago$/);
  await screenshot(page, 'admin-drones');

  page.on('dialog', (d) => d.accept());
  await drone.getByTestId('drone-drain').click();
  await expect(page.getByTestId('flash')).toContainText('draining');
  await expect(page.getByTestId('drone-row').first().getByTestId('drone-status')).toHaveText('draining');

  await page.goto(backends);
  await page.getByTestId('spawn-submit').click();
  await expect(page.getByTestId('form-error')).toContainText('draining');

  await page.goto('/admin/drones');
  await page.getByTestId('drone-row').first().getByTestId('drone-undrain').click();
  await expect(page.getByTestId('flash')).toContainText('new backends again');
  await expect(page.getByTestId('drone-row').first().getByTestId('drone-status')).toHaveText('ready');

  await page.goto(backends);
  await page.getByTestId('spawn-submit').click();
  await expect(page.getByTestId('flash')).toContainText('spawned');
  await expect(page.getByTestId('backend-row').first().getByTestId('backend-status')).toHaveText('ready', { timeout: 30_000 });

  await page.goto('/admin/backends');
  await expect(page.getByTestId('admin-backends')).toBeVisible();
  await page.goto('/admin/users');
  await expect(page.getByTestId('user-row').filter({ hasText: admin.email })).toHaveCount(1);
});
