import { test, expect, Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { createEvent, setAdmission, openMap, apiFan } from './fan-helpers';

// axe-core on the pages people use: no violation of impact serious or
// critical (WCAG 2.x A/AA and axe's best practices).

async function expectNoSeriousA11yIssues(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.map(v => `${what}: ${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).join(', ')})`)).toEqual([]);
}

test('home, event (waiting and map), order and staff login pages pass axe', async ({ page, playwright, baseURL, request }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'Events' })).toBeVisible();
  await expectNoSeriousA11yIssues(page, 'home');

  // Waiting: admission paused behind a fan who joined first.
  const event = await createEvent(request, { sections: 2, rows: 3, perRow: 8 });
  await setAdmission(request, event, { paused: true });
  const first = await apiFan(playwright, baseURL!);
  await first.post(`/api/events/${event}/queue`);
  await page.goto('/events/' + event);
  await expect(page.getByTestId('queue-position')).toHaveText('2');
  await expectNoSeriousA11yIssues(page, 'waiting room');

  // The pre-queue, with the shuffle's hash.
  const later = await createEvent(request, { onSaleInMs: 3600e3 });
  await page.goto('/events/' + later);
  await expect(page.getByTestId('shuffle-hash')).toBeVisible();
  await expect(page.locator('#queue')).toContainText('pre-queue');
  await expectNoSeriousA11yIssues(page, 'pre-queue');

  // The map with a hold (panel, timer, extension, checkout form) and the
  // list view open.
  await setAdmission(request, event, { paused: false });
  await openMap(page, event);
  await page.locator('[data-seat="A-2-3"]').click();
  await expect(page.locator('[data-seat="A-2-3"]')).toHaveAttribute('data-state', 'mine');
  await page.locator('#seat-list-details > summary').click();
  await expect(page.getByTestId('seat-list')).toBeVisible();
  await expectNoSeriousA11yIssues(page, 'seat map');

  // Checkout, then the order page.
  await page.locator('#card').fill('4242424242424242');
  await page.locator('#email').fill('a11y@example.com');
  await page.getByRole('button', { name: /Pay/ }).click();
  await expect(page.getByTestId('order-confirmation')).toBeVisible();
  await expectNoSeriousA11yIssues(page, 'confirmation');
  const orderId = (await page.getByTestId('order-id').first().textContent())!.trim();
  await page.goto('/orders/' + orderId);
  await expect(page.getByTestId('order')).toBeVisible();
  await expectNoSeriousA11yIssues(page, 'order page');

  await page.goto('/staff/login');
  await expectNoSeriousA11yIssues(page, 'staff login');
  await first.dispose();
});
