import { test, expect } from '@playwright/test';
import { createServer, type Server } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { signup, createProject, registerDemo, screenshot, unique } from './helpers';

// A receiver on 127.0.0.1 (plane dev runs with --webhook-allow-private):
// it records each delivery and answers 204.
type Delivery = { headers: Record<string, string | string[] | undefined>; body: string };

function receiver(): Promise<{ server: Server; url: string; got: Delivery[] }> {
  const got: Delivery[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, url: `http://127.0.0.1:${port}/hook?token=receiver-secret`, got });
    });
  });
}

// The Standard Webhooks check a receiver makes.
function verified(secret: string, d: Delivery): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${d.headers['webhook-id']}.${d.headers['webhook-timestamp']}.${d.body}`;
  const want = createHmac('sha256', key).update(signed).digest();
  return String(d.headers['webhook-signature'] ?? '').split(' ').some((s) => {
    const got = Buffer.from(s.replace(/^v1,/, ''), 'base64');
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

// Add a webhook in the dashboard, see its secret once, watch a spawn's
// event delivered (signed) and listed with its attempt, delete it.
test('webhook: create → secret once → delivery after a spawn → delete', async ({ page }) => {
  const rc = await receiver();
  try {
    await signup(page, 'hooks');
    await createProject(page, unique('hooks'));
    await registerDemo(page, { maxIdle: 5 });

    await page.getByTestId('tab-webhooks').click();
    await expect(page.getByTestId('no-webhooks')).toBeVisible();
    const form = page.getByTestId('webhook-form');
    await form.getByLabel('URL').fill(rc.url);
    await form.getByTestId('field-event-backend.status').check();
    await page.getByTestId('webhook-submit').click();
    const secret = (await page.getByTestId('webhook-secret').textContent())!.trim();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{40,}={0,2}$/);
    const row = page.getByTestId('webhook-row');
    await expect(row).toHaveCount(1);
    await expect(row.getByTestId('webhook-link')).toHaveText(/^http:\/\/127\.0\.0\.1:\d+\/hook\?…$/);
    await expect(row.getByTestId('webhook-events')).toHaveText('backend.status');
    await expect(row.getByTestId('webhook-state')).toHaveText('active');
    await screenshot(page, 'webhooks');

    await page.goto(page.url()); // a fresh GET: reloading would post the form again
    await expect(page.getByTestId('webhook-secret-once')).toHaveCount(0);
    await expect(page.locator('body')).not.toContainText(secret);
    await expect(page.locator('body')).not.toContainText('receiver-secret');

    await page.getByTestId('tab-backends').click();
    await page.getByTestId('spawn-submit').click();
    await expect(page.getByTestId('flash')).toContainText('spawned');

    // The webhook's page polls its deliveries: the spawn's statuses come
    // in without a reload.
    await page.getByTestId('tab-webhooks').click();
    await page.getByTestId('webhook-link').click();
    const delivered = page.locator('[data-testid="delivery-row"][data-status="delivered"]');
    await expect(delivered.first()).toBeVisible({ timeout: 15_000 });
    await expect(delivered.first().getByTestId('delivery-event')).toHaveText('backend.status');
    await expect(delivered.first().getByTestId('attempt-result')).toHaveText('HTTP 204');
    await screenshot(page, 'webhook');

    expect(rc.got.length).toBeGreaterThan(0);
    for (const d of rc.got) {
      expect(verified(secret, d), `signature of ${d.body}`).toBe(true);
      expect(JSON.parse(d.body).type).toBe('backend.status');
    }

    page.once('dialog', (d) => d.accept());
    await page.getByTestId('webhook-delete').click();
    await expect(page.getByTestId('flash')).toContainText('deleted');
    await expect(page.getByTestId('no-webhooks')).toBeVisible();

    await page.getByTestId('tab-activity').click();
    await expect(page.locator('[data-testid="activity-row"][data-action="webhook.create"]')).toContainText('Webhook added');
    await expect(page.locator('[data-testid="activity-row"][data-action="webhook.delete"]')).toHaveCount(1);
  } finally {
    rc.server.close();
  }
});
