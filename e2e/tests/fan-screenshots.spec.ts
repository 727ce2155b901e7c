import { test, expect, Page } from '@playwright/test';
import * as path from 'path';
import { createEvent, openMap, newFan, apiFan, admit, hold, buy } from './fan-helpers';

// Screenshots of the fan's page for docs/ and the README: the live map mid-
// sale (others' holds, sold seats, this fan's holds and the hold panel), at
// desktop and at phone width, and the seat list view.

// The suite checks the pages render and fit; it rewrites the committed PNGs
// only when asked (UPDATE_SCREENSHOTS=1 ./run), so test runs leave the tree
// clean. Otherwise the PNGs go to the test's output directory.
function shot(name: string): string {
  return process.env.UPDATE_SCREENSHOTS
    ? path.join(__dirname, '..', '..', 'docs', 'screenshots', name)
    : test.info().outputPath(name);
}

async function settle(page: Page) {
  // The countdown ticks every second; freeze nothing, just let fonts and
  // the last swaps land.
  await page.evaluate(() => document.fonts.ready);
  await page.waitForTimeout(300);
}

test('screenshots of the fan page', async ({ browser, playwright, baseURL, request }) => {
  const event = await createEvent(request, { sections: 3, rows: 6, perRow: 10, name: 'Aurora Nights — Live at the Dome' });
  const others = [await apiFan(playwright, baseURL!), await apiFan(playwright, baseURL!)];
  for (const o of others) { await admit(o, event); }
  await buy(others[0], event, ['A-1-4', 'A-1-5', 'A-1-6', 'B-3-2', 'B-3-3', 'C-5-7']);
  await hold(others[1], event, ['A-2-5', 'A-2-6', 'B-1-9', 'C-2-2']);

  const desktop = await newFan(browser, { width: 1280, height: 900 });
  await openMap(desktop.page, event);
  for (const s of ['A-3-4', 'A-3-5']) {
    await desktop.page.locator(`[data-seat="${s}"]`).click();
    await expect(desktop.page.locator(`[data-seat="${s}"]`)).toHaveAttribute('data-state', 'mine');
  }
  await expect(desktop.page.getByTestId('hold-timer')).toBeVisible();
  await settle(desktop.page);
  await desktop.page.screenshot({ path: shot('fan.png'), fullPage: true });

  // The list view, open.
  await desktop.page.locator('#seat-list-details > summary').click();
  await expect(desktop.page.getByTestId('seat-list')).toBeVisible();
  await settle(desktop.page);
  await desktop.page.locator('#seat-list-view').screenshot({ path: shot('fan-list.png') });

  const phone = await newFan(browser, { width: 390, height: 844 });
  await phone.page.goto('/events/' + event);
  await expect(phone.page.locator('[data-seat="A-1-1"]')).toBeVisible();
  await expect(phone.page.locator('[data-seat="A-3-4"]')).toHaveAttribute('data-state', 'held');
  await phone.page.locator('[data-seat="B-4-6"]').click();
  await expect(phone.page.locator('[data-seat="B-4-6"]')).toHaveAttribute('data-state', 'mine');
  // No sideways scrolling of the page itself at phone width.
  expect(await phone.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await settle(phone.page);
  await phone.page.screenshot({ path: shot('fan-phone.png'), fullPage: true });

  await desktop.ctx.close();
  await phone.ctx.close();
  for (const o of others) { await o.dispose(); }
});
