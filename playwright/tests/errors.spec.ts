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
