// Browser tests of the dashboard against a real `plane dev` (controller,
// embedded NATS, one drone on local Docker) started by Playwright itself.
//
// Needs: bin/plane (make build), the image plane-demo:latest (make
// test-images), Docker, and Debian's Chromium at /usr/bin/chromium:
// Playwright's own browser downloads cannot be fetched here, so never run
// `playwright install`. `make e2e` does all of this.
//
// Every run gets free ports and a fresh data folder, so it never collides
// with a `plane dev` on the default ports or with state from an earlier run.
// Specs read where the server is from the environment:
//
//   PLANE_E2E_URL         base URL of the dashboard and API (also use.baseURL)
//   PLANE_E2E_PROXY_PORT  port of the drone's HTTP proxy on 127.0.0.1
//   PLANE_E2E_DNS_PORT    port of the authoritative DNS server (UDP and TCP)
//   PLANE_E2E_DATA        the server's data folder
//   PLANE_E2E_DRONE       the drone's id, the label of this run's containers
import { defineConfig, devices } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// Playwright loads this file in the runner and again in every worker. The
// runner picks ports and the data folder once and leaves them in the
// environment, which the workers inherit, so all agree on one server. The
// marker, not PLANE_E2E_URL itself, says it is done: a PLANE_E2E_URL left
// exported in a shell must not stop a run from picking free ports.
if (process.env.PLANE_E2E_RUNNER_PID === undefined) {
  process.env.PLANE_E2E_RUNNER_PID = String(process.pid);
  const [http, proxy, dns] = freePorts(3);
  process.env.PLANE_E2E_URL = `http://127.0.0.1:${http}`;
  process.env.PLANE_E2E_PROXY_PORT = String(proxy);
  process.env.PLANE_E2E_DNS_PORT = String(dns);
  process.env.PLANE_E2E_DATA = mkdtempSync(join(tmpdir(), 'plane-e2e-'));
  process.env.PLANE_E2E_DRONE = `e2e-${process.pid}`;
}
const baseURL = process.env.PLANE_E2E_URL!;
const httpAddr = new URL(baseURL).host;

// freePorts asks the kernel for n distinct free ports, each free for both
// TCP and UDP (the DNS server takes both). It runs synchronously because
// Playwright reads the config synchronously.
function freePorts(n: number): number[] {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    const n = ${n}, ports = [], held = [];
    function next(tries) {
      if (ports.length === n) {
        held.forEach((s) => s.close());
        process.stdout.write(JSON.stringify(ports));
        return;
      }
      if (tries > 50) { console.error('no free ports'); process.exit(1); }
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = srv.address().port;
        const udp = dgram.createSocket('udp4');
        udp.once('error', () => { udp.close(); srv.close(); next(tries + 1); });
        udp.bind(port, '127.0.0.1', () => {
          held.push(srv, udp);
          ports.push(port);
          next(tries);
        });
      });
    }
    next(0);
  `;
  const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  return JSON.parse(out) as number[];
}

const plane = resolve(__dirname, '..', 'bin', 'plane');

export default defineConfig({
  testDir: './tests',
  // Backends outlive plane dev by design; this run's carry its drone id.
  globalTeardown: './teardown.ts',
  // The whole suite shares one plane dev, so tests run one at a time.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  outputDir: 'test-results',
  reporter: [['list'], ['html', { outputFolder: 'playwright-report', open: 'never' }]],
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        launchOptions: {
          executablePath: '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--no-first-run',
            '--disable-quic',
          ],
        },
      },
    },
  ],
  webServer: {
    command: [
      JSON.stringify(plane),
      'dev',
      '--http', httpAddr,
      '--proxy', `127.0.0.1:${process.env.PLANE_E2E_PROXY_PORT}`,
      '--dns', `127.0.0.1:${process.env.PLANE_E2E_DNS_PORT}`,
      '--nats-listen', '127.0.0.1:0',
      '--data', JSON.stringify(process.env.PLANE_E2E_DATA),
      '--image', 'demo=plane-demo:latest',
      '--id', process.env.PLANE_E2E_DRONE!,
      // The webhook spec's receiver listens on 127.0.0.1.
      '--webhook-allow-private',
    ].join(' '),
    url: `${baseURL}/readyz`,
    reuseExistingServer: false,
    timeout: 120_000,
    // The server's log shows in the run's output: it is what explains a
    // failed start or a failed spec in CI.
    stderr: 'pipe',
    gracefulShutdown: { signal: 'SIGTERM', timeout: 10_000 },
  },
});
