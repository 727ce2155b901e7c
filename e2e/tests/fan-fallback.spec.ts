import { test, expect } from '@playwright/test';
import { createEvent, newFan, apiFan, admit, hold } from './fan-helpers';

// With the WebSocket blocked the page falls back to polling the JSON queue
// and a periodic map snapshot: slower, still correct.

test('with the WebSocket refused, the page polls: the map appears and holds work', async ({ browser, playwright, baseURL, request }) => {
  const event = await createEvent(request);
  const { ctx, page } = await newFan(browser);
  await page.routeWebSocket('**/ws', ws => ws.close());
  await page.goto('/events/' + event);
  await expect(page.locator('#live')).toHaveAttribute('data-transport', 'polling', { timeout: 15_000 });
  await expect(page.locator('#queue[data-state="admitted"]')).toBeVisible();
  await expect(page.locator('[data-seat="A-1-1"]')).toBeVisible();

  await page.locator('[data-seat="A-1-2"]').click();
  await expect(page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'mine');
  await expect(page.getByTestId('hold-timer')).toHaveText(/^[0-9]+:[0-5][0-9]$/);

  // Without the socket's hold_expiring, the page itself announces a hold
  // about to end (simulated: the timer is told the hold ends in 30 s).
  await page.getByTestId('hold-timer').evaluate(t => t.setAttribute('data-expires-at', new Date(Date.now() + 30e3).toISOString()));
  await expect(page.locator('#hold-expiring[role=status]')).toContainText('less than a minute');
  await expect(page.getByTestId('hold-timer')).toHaveText(/^0:[0-3][0-9]$/);

  // Another fan's hold reaches this page through the snapshot.
  const other = await apiFan(playwright, baseURL!);
  await admit(other, event);
  await hold(other, event, ['A-2-4']);
  await expect(page.locator('[data-seat="A-2-4"]')).toHaveAttribute('data-state', 'held', { timeout: 10_000 });
  // And this fan's hold is still this fan's.
  await expect(page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'mine');
  await ctx.close();
  await other.dispose();
});

test('without window.WebSocket the page polls from the start', async ({ browser, request }) => {
  const event = await createEvent(request);
  const { ctx, page } = await newFan(browser);
  await page.addInitScript(() => { delete (window as any).WebSocket; });
  await page.goto('/events/' + event);
  await expect(page.locator('#live')).toHaveAttribute('data-transport', 'polling');
  await expect(page.locator('[data-seat="A-1-1"]')).toBeVisible();
  await page.locator('[data-seat="A-1-3"]').click();
  await expect(page.locator('[data-seat="A-1-3"]')).toHaveAttribute('data-state', 'mine');
  await page.locator('[data-seat="A-1-3"]').click();
  await expect(page.locator('[data-seat="A-1-3"]')).toHaveAttribute('data-state', 'available');
  await ctx.close();
});
