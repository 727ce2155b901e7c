import { test, expect } from '@playwright/test';

test('home page lists the events, each linking to its page', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'Events' })).toBeVisible();
  const link = page.getByRole('link', { name: 'E2E Home Concert' });
  await expect(link).toBeVisible();
  await expect(link).toHaveAttribute('href', '/events/e2e-home');
  const card = page.locator('[data-event="e2e-home"]');
  await expect(card).toContainText('Test Hall');
  await expect(card.getByTestId('seats-available')).toContainText('of 30 seats available');
});
