// Shared steps of the dashboard specs.
import { expect, type Page, type APIRequestContext } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export const plane = resolve(__dirname, '..', '..', 'bin', 'plane');
export const password = 'correct horse battery';
export const admin = { email: 'admin@e2e.test', password };

let adminMade = false;

// ensureAdmin creates the instance's admin from the server's machine, the
// way an operator would (plane admin user create --admin), so that users
// the specs sign up are never the first, and so never admins by accident.
export function ensureAdmin() {
  if (adminMade) return;
  try {
    execFileSync(plane, ['admin', 'user', 'create', '--data', process.env.PLANE_E2E_DATA!, '--email', admin.email, '--name', 'Admin', '--admin'], {
      env: { ...process.env, PLANE_PASSWORD: admin.password },
      stdio: 'pipe',
    });
  } catch (e: any) {
    if (!String(e.stderr).includes('exists already')) throw e;
  }
  adminMade = true;
}

// unique returns a name no other spec or run has used.
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

export async function signup(page: Page, name: string): Promise<string> {
  ensureAdmin();
  const email = `${unique(name)}@example.com`;
  await page.goto('/signup');
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByTestId('signup-submit').click();
  await expect(page).toHaveURL(/\/projects/);
  return email;
}

export async function login(page: Page, email: string, pw = password) {
  await page.goto('/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(pw);
  await page.getByTestId('login-submit').click();
}

// createProject makes a project in the user's first team and lands on its
// images page.
export async function createProject(page: Page, name: string) {
  await page.goto('/projects');
  await page.getByTestId('project-form').getByLabel('Name').fill(name);
  await page.getByTestId('project-submit').click();
  await expect(page).toHaveURL(/\/projects\/\d+\/images/);
}

// registerDemo registers the demo image in the current project. A short
// idle limit lets specs watch backends stop by themselves, and stops what
// they leave behind.
export async function registerDemo(page: Page, opts: { maxIdle?: number; env?: string } = {}) {
  const form = page.getByTestId('image-form');
  await form.getByTestId('field-name').fill('demo');
  await form.getByTestId('field-ref').fill('plane-demo:latest');
  await form.getByTestId('field-max_idle_seconds').fill(String(opts.maxIdle ?? 10));
  if (opts.env) await form.getByTestId('field-env').fill(opts.env);
  await page.getByTestId('image-submit').click();
  await expect(page.getByTestId('image-row')).toHaveCount(1);
}

// Pages record, from their first script on, what the live parts of the
// page did: the statuses rows showed and whether the event stream opened.
// A reload starts the record afresh, so a spec can tell live updates from
// reloads.
export async function recordLive(page: Page) {
  await page.addInitScript(() => {
    const w = window as any;
    w.__statuses = [];
    w.__sseOpen = false;
    document.addEventListener('htmx:sseOpen', () => { w.__sseOpen = true; });
    const seen = () => {
      document.querySelectorAll('[data-testid="backend-status"]').forEach((el) => {
        const s = (el.textContent || '').trim();
        if (w.__statuses[w.__statuses.length - 1] !== s) w.__statuses.push(s);
      });
    };
    new MutationObserver(seen).observe(document, { subtree: true, childList: true, characterData: true });
  });
}

export async function sseOpen(page: Page) {
  await page.waitForFunction(() => (window as any).__sseOpen === true);
}

export async function statuses(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as any).__statuses as string[]);
}

// screenshot writes docs/screenshots/<name>.png, only under `make
// screenshots` (PLANE_SCREENSHOTS=1): a test run leaves the tree as it was.
export async function screenshot(page: Page, name: string) {
  if (process.env.PLANE_SCREENSHOTS !== '1') return;
  await page.screenshot({ path: resolve(__dirname, '..', '..', 'docs', 'screenshots', `${name}.png`), fullPage: true });
}

export async function spawnAPI(request: APIRequestContext, token: string) {
  return request.post('/api/v1/backends', { headers: { Authorization: `Bearer ${token}` }, data: { image: 'demo' } });
}
