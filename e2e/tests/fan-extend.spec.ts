import { test, expect } from '@playwright/test';
import { createEvent, openMap, staff } from './fan-helpers';

// "I need more time" (WCAG 2.2.1 Timing Adjustable): once per event, the
// timer follows the server's new expiry, the use is audited.

test('a fan can ask once for more time and the timer follows the server', async ({ page, request }) => {
  const event = await createEvent(request);
  await openMap(page, event);
  await page.locator('[data-seat="A-1-1"]').click();
  await page.locator('[data-seat="A-1-2"]').click();
  await expect(page.locator('[data-seat="A-1-2"]')).toHaveAttribute('data-state', 'mine');
  const timer = page.getByTestId('hold-timer');
  await expect(timer).toHaveText(/^[45]:[0-5][0-9]$/); // HOLD_TTL is 5m
  const before = Date.parse((await timer.getAttribute('data-expires-at'))!);

  const extend = page.getByRole('button', { name: 'I need more time' });
  await expect(extend).toHaveAccessibleDescription(/Adds 2 minutes to your holds, once/);
  await extend.click();
  await expect(page.locator('#hold-expiring')).toContainText('held 2 minutes longer');
  await expect(timer).toHaveText(/^[67]:[0-5][0-9]$/);
  const after = Date.parse((await timer.getAttribute('data-expires-at'))!);
  expect(after - before).toBeGreaterThanOrEqual(118_000);
  expect(after - before).toBeLessThanOrEqual(122_000);
  await expect(extend).toHaveCount(0);
  await expect(page.getByTestId('extend-used')).toBeVisible();
  await expect(page.locator('#alert')).toBeEmpty();

  // A second try (a stale page, a double click) is refused in words.
  const again = await page.request.post(`/events/${event}/holds/extend`, { headers: { 'HX-Request': 'true' } });
  expect(again.status()).toBe(400);
  expect(await again.text()).toContain('You already used your extension');

  // The server agrees with the page: the holds' expiry moved.
  const holds = await (await page.request.get(`/api/events/${event}/holds`)).json();
  expect(Math.abs(Date.parse(holds.expires_at) - after)).toBeLessThan(2000);

  // Staff see the extension in the event's audit log.
  const cockpit = await request.get(`/staff/events/${event}`, { headers: staff });
  expect(await cockpit.text()).toContain('hold_extended');
});
