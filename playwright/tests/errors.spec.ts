import { test, expect } from '@playwright/test';
import { signup, login, createProject, password, screenshot, unique } from './helpers';

test('a wrong password says so and keeps the email', async ({ page }) => {
  const email = await signup(page, 'eve');
  await page.getByTestId('logout').click();
  await expect(page).toHaveURL(/\/login/);
  await screenshot(page, 'login');
  await login(page, email, password + 'x');
  await expect(page.getByTestId('form-error')).toHaveText('Wrong email or password.');
  await expect(page.getByLabel('Email')).toHaveValue(email);
  await login(page, email);
  await expect(page).toHaveURL(/\/projects/);
});

test('a duplicate project name is refused next to the field', async ({ page }) => {
  await signup(page, 'dup');
  const name = unique('twice');
  await createProject(page, name);
  await page.goto('/projects');
  await page.getByTestId('project-form').getByLabel('Name').fill(name);
  await page.getByTestId('project-submit').click();
  await expect(page.getByTestId('project-form').getByTestId('error-name')).toContainText('already exists');
  await expect(page.getByTestId('project-form').getByLabel('Name')).toHaveValue(name);
});

test('an invalid image reference is refused next to the field', async ({ page }) => {
  await signup(page, 'ref');
  await createProject(page, unique('refs'));
  const form = page.getByTestId('image-form');
  await form.getByTestId('field-name').fill('broken');
  await form.getByTestId('field-ref').fill('Not A Ref!');
  await page.getByTestId('image-submit').click();
  await expect(form.getByTestId('error-ref')).toBeVisible();
  await expect(form.getByTestId('field-ref')).toHaveValue('Not A Ref!');
  await expect(form.getByTestId('field-name')).toHaveValue('broken');
});

test('a non-admin opening the admin pages is told they are for admins', async ({ page }) => {
  await signup(page, 'mallory');
  await expect(page.getByTestId('nav-admin')).toHaveCount(0);
  for (const path of ['/admin/drones', '/admin/backends', '/admin/users']) {
    const res = await page.goto(path);
    expect(res?.status()).toBe(403);
    await expect(page.getByTestId('error-message')).toContainText('for the admins of this Plane');
  }
});

test('a warm pool above the maximum is refused by the form; one in range is saved', async ({ page }) => {
  await signup(page, 'pool');
  await createProject(page, unique('pools'));
  const form = page.getByTestId('image-form');
  await form.getByTestId('field-name').fill('pooled');
  await form.getByTestId('field-ref').fill('plane-demo:latest');
  // The browser holds the form back (the server's own refusal, next to the
  // field, is tested in server/ui_images_test.go).
  await form.getByTestId('field-warm_pool').fill('101');
  await page.getByTestId('image-submit').click();
  expect(await form.getByTestId('field-warm_pool').evaluate((el: HTMLInputElement) => el.validity.rangeOverflow)).toBe(true);
  await expect(page.getByTestId('image-row')).toHaveCount(0);

  await form.getByTestId('field-warm_pool').fill('1');
  await page.getByTestId('image-submit').click();
  const row = page.getByTestId('image-row');
  await expect(row.getByTestId('image-warm-pool')).toHaveText('1 per drone');
  await expect(page.getByTestId('warm-pools').getByRole('heading', { name: 'pooled' })).toBeVisible();

  // Back to none, which also empties the drone's pool for the next specs.
  await row.getByTestId('image-edit').click();
  await expect(page.getByTestId('field-warm_pool')).toHaveValue('1');
  await page.getByTestId('field-warm_pool').fill('');
  await page.getByTestId('image-submit').click();
  await expect(row.getByTestId('image-warm-pool')).toHaveText('none');
  await expect(page.getByTestId('warm-pools')).toHaveCount(0);
});
