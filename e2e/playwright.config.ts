import { defineConfig } from '@playwright/test';

// The suite starts its own `seatmap serve` (start-server.sh) on a free port,
// against the DATABASE_URL / REDIS_URL that scripts/test provides, and drives
// Debian's Chromium — Playwright never downloads a browser here.
const port = Number(process.env.E2E_PORT || 18181);
export const staffToken = 'e2e-staff-token';

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
  webServer: {
    command: `bash ./start-server.sh ${port}`,
    url: `http://127.0.0.1:${port}/readyz`,
    timeout: 60_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
