// Removes the containers of this run's drone: plane dev leaves backends
// running when it stops (the next start adopts them), but a test run has no
// next start.
import { execFileSync } from 'node:child_process';

export default function teardown() {
  const drone = process.env.PLANE_E2E_DRONE;
  if (!drone) return;
  const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=plane.drone=${drone}`], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
  if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
}
