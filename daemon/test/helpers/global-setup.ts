import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TEST_IMAGE, ensureTestImage, sweepTestLeftovers } from './docker.js';

/**
 * Integration tests need a real Docker engine. If none answers, try scripts/ensure-docker.sh
 * (installs and starts one when running as root); otherwise fail loudly, never skip.
 */
export default async function setup(): Promise<void> {
  const script = fileURLToPath(new URL('../../../scripts/ensure-docker.sh', import.meta.url));
  try {
    execFileSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch {
    throw new Error('No Docker engine: integration tests need one. Start Docker (or run scripts/ensure-docker.sh as root) and retry.');
  }
  // Several test runs sharing one engine (a developer running two files at once) set BERTH_TEST_NO_SWEEP.
  if (!process.env.BERTH_TEST_NO_SWEEP) await sweepTestLeftovers();
  await ensureTestImage();
  execFileSync('bash', [fileURLToPath(new URL('../../../scripts/build-test-images.sh', import.meta.url))], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  process.env.BERTH_TEST_IMAGE = TEST_IMAGE;
}
