import { test, expect } from '@playwright/test';
import { createEvent, openMap, newFan, apiFan, admit, hold, buy, tabTo } from './fan-helpers';

// The seat list, the alternative to the map: section → row → "n seats
// together", each seat a real button.

test('the seat list buys a seat with the keyboard only', async ({ page, playwright, baseURL, request }) => {
  const event = await createEvent(request, { sections: 2, rows: 2, perRow: 6 });
  // Another fan sold A-1-3 and holds A-1-4: row 1 of section A splits into
  // seats 1–2 and 5–6.
  const other = await apiFan(playwright, baseURL!);
  await admit(other, event);
  await buy(other, event, ['A-1-3']);
  await hold(other, event, ['A-1-4']);

  await openMap(page, event);
  await tabTo(page, '#seat-list-details > summary');
  await page.keyboard.press('Enter');
  const list = page.getByTestId('seat-list');
  await expect(list).toBeVisible();
  await expect(list.getByRole('heading', { level: 3, name: /Section A, \$50\.00/ })).toBeVisible();
  await expect(list.getByRole('heading', { level: 3, name: /Section B, \$40\.00/ })).toBeVisible();
  const row1 = list.locator('.list-section').first().locator('.seat-groups').first();
  await expect(row1.getByTestId('seat-group')).toHaveText([/2 seats together/, /2 seats together/]);
  await expect(list.locator('[data-list-seat="A-1-3"], [data-list-seat="A-1-4"]')).toHaveCount(0);
  await expect(list.getByRole('button', { name: 'Hold seat 6 (Section A, row 2, $50.00)' })).toBeVisible();
  await expect(list).toContainText('22 seats available');

  // Tab to seat A-1-5 and hold it with Enter: the list, the map and the
  // panel all follow; focus stays on the seat.
  await tabTo(page, '[data-list-seat="A-1-5"]');
  await page.keyboard.press('Enter');
  const seat = list.locator('[data-list-seat="A-1-5"]');
  await expect(seat).toHaveAttribute('data-state', 'mine');
  await expect(seat).toHaveAccessibleName('Release seat 5 (Section A, row 1, held by you)');
  await expect(seat).toBeFocused();
  await expect(page.locator('[data-seat="A-1-5"]')).toHaveAttribute('data-state', 'mine');
  await expect(page.getByTestId('hold-timer')).toHaveText(/^[0-9]+:[0-5][0-9]$/);
  await expect(list).toContainText('21 seats available. You hold 1.');
  await expect(list.getByTestId('seat-group').filter({ hasText: 'Held by you' })).toHaveCount(1);

  // Space releases it, Space holds it again.
  await page.keyboard.press('Space');
  await expect(seat).toHaveAttribute('data-state', 'available');
  await expect(page.locator('[data-seat="A-1-5"]')).toHaveAttribute('data-state', 'available');
  await expect(seat).toBeFocused();
  await page.keyboard.press('Space');
  await expect(seat).toHaveAttribute('data-state', 'mine');

  // Another fan's hold shows up in the open list without a click here.
  await hold(other, event, ['B-2-2']);
  await expect(list.locator('[data-list-seat="B-2-2"]')).toHaveCount(0);

  // Pay with the keyboard: Tab to the card field, type, Tab on, Enter.
  await tabTo(page, '#card');
  await page.keyboard.type('4242424242424242');
  await page.keyboard.press('Tab');
  await expect(page.locator('#email')).toBeFocused();
  await page.keyboard.type('list@example.com');
  await tabTo(page, '[data-testid="checkout"] button[type="submit"]', 5);
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('order-confirmation')).toBeVisible();
  await expect(page.getByTestId('order-confirmation')).toContainText('A-1-5');
  await expect(page.locator('[data-seat="A-1-5"]')).toHaveAttribute('data-state', 'sold');
  await expect(list.locator('[data-list-seat="A-1-5"]')).toHaveCount(0);
  await other.dispose();
});

test('the seat list shows a seat taken meanwhile as an alert and drops it', async ({ browser, playwright, baseURL, request }) => {
  const event = await createEvent(request);
  const a = await newFan(browser);
  await openMap(a.page, event);
  await a.page.locator('#seat-list-details > summary').click();
  const list = a.page.getByTestId('seat-list');
  await expect(list.locator('[data-list-seat="A-2-2"]')).toBeVisible();
  // Freeze the list's live refresh for a moment: the other fan's hold lands
  // between the list rendering and the click.
  const other = await apiFan(playwright, baseURL!);
  await admit(other, event);
  await a.page.route('**/seat-list', route => setTimeout(() => route.continue(), 1500));
  await hold(other, event, ['A-2-2']);
  await list.locator('[data-list-seat="A-2-2"]').click();
  await expect(a.page.locator('#alert[role=alert]')).toContainText('taken by someone else');
  await a.page.unroute('**/seat-list');
  await expect(list.locator('[data-list-seat="A-2-2"]')).toHaveCount(0);
  await a.ctx.close();
  await other.dispose();
});
