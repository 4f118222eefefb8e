import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, type BerthEvent, type ImageBuildProgress } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { BERTH_BIN, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);

/** Image builds, the catalog, removal and image resolution, on the real engine (small busybox builds). */
describe('images', () => {
  let d: DaemonProcess;
  let repo: string;
  let dir: string;
  const tag = `claude-agent-bt${Date.now().toString(36)}`;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject());
    dir = join(d.home, 'build');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), 'FROM berth-test-busybox:latest\nARG VARIANT\nRUN echo "built as $VARIANT" > /variant\nRUN echo step three\n');
    await writeFile(join(dir, 'Broken.Dockerfile'), 'FROM berth-test-busybox:latest\nRUN echo before the failure && exit 7\nRUN echo never\n');
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    for (const t of [`${tag}:latest`, `${tag}:dev`, `${tag}:tty`]) await docker('rmi', '-f', t).catch(() => {});
  });

  it('builds through the engine API with step progress on /events and on the stream', async () => {
    const events: BerthEvent[] = [];
    const ctl = new AbortController();
    const reading = (async () => {
      for await (const e of d.client.events({ signal: ctl.signal })) {
        events.push(e);
        if (e.type === 'image.built') break;
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const progress: ImageBuildProgress[] = [];
    const r = await d.client.buildImage({ name: tag, dockerfile: join(dir, 'Dockerfile') }, (p) => progress.push(p));
    await reading;
    ctl.abort();
    // The engine counts the labels berth adds as steps of their own: at least the file's four.
    expect(r.name).toBe(`${tag}:latest`);
    expect(r.steps).toBeGreaterThanOrEqual(4);
    expect(r.id).toMatch(/^sha256:/);
    expect(progress.map((p) => p.step).filter((x) => x !== null).at(-1)).toBe(r.steps);
    expect(progress.some((p) => p.line === 'step three')).toBe(true);
    expect(events.filter((e) => e.type === 'image.build').length).toBeGreaterThanOrEqual(4);
    const labels = JSON.parse(await docker('image', 'inspect', '-f', '{{json .Config.Labels}}', `${tag}:latest`));
    expect(labels).toMatchObject({ 'dev.berth.image': 'true', 'dev.berth.image.variant': 'prod' });
    expect(await docker('run', '--rm', `${tag}:latest`, 'cat', '/variant')).toBe('built as prod');
  });

  it('the CLI builds the dev variant with plain progress lines when not on a terminal', async () => {
    const { stdout, stderr } = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, 'image', 'build', `${tag}:dev`, '--file', join(dir, 'Dockerfile'), '--dev']);
    expect(stdout).toMatch(new RegExp(`^built ${tag}:dev \\([0-9a-f]{12}\\)`));
    expect(stderr).toMatch(new RegExp(`^\\[${tag}:dev 1/\\d+\\] Step 1/\\d+ : FROM berth-test-busybox:latest$`, 'm'));
    expect(await docker('run', '--rm', `${tag}:dev`, 'cat', '/variant')).toBe('built as dev');
  });

  it('the CLI draws a progress bar on a terminal', async () => {
    // util-linux `script` gives the CLI a pseudo-terminal; what it drew comes back on stdout.
    const cmd = [process.execPath, BERTH_BIN, '--socket', d.socket, 'image', 'build', `${tag}:tty`, '--file', join(dir, 'Dockerfile')]
      .map((a) => `'${a}'`)
      .join(' ');
    const { stdout } = await exec('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, TERM: 'xterm', COLUMNS: '120' } });
    expect(stdout).toMatch(/[\u2588\u2591]{10,} step (\d+)\/\1\b/);
    expect(stdout).not.toMatch(new RegExp(`\\[${tag}:tty \\d+/\\d+\\]`));
    expect(stdout).toMatch(new RegExp(`built ${tag}:tty \\([0-9a-f]{12}\\)`));
  });

  it('a failing step gives IMAGE_BUILD_FAILED with the step and its last lines', async () => {
    const err = (await d.client.images.build({ name: `${tag}-broken`, dockerfile: join(dir, 'Broken.Dockerfile') }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('IMAGE_BUILD_FAILED');
    expect(err.details).toMatchObject({ step: 2, instruction: expect.stringMatching(/^RUN echo before the failure/) });
    expect(err.details!.lines).toContain('before the failure');
    expect(err.message).toMatch(/step 2\/\d+ \(RUN echo before the failure/);
    const missing = (await d.client.images.build({ name: `${tag}-x`, dockerfile: join(dir, 'Nope') }).catch((e: unknown) => e)) as BerthError;
    expect(missing.code).toBe('PATH_NOT_FOUND');
  });

  it('lists images with who uses them; refuses to remove one a session uses', async () => {
    await d.client.agents.define({ name: 'mine', image: `${tag}:latest`, command: sh('sleep 3600') });
    const s = await d.client.sessions.start({ project: 'web', agent: 'mine', mode: 'read' });
    expect(s.image).toBe(`${tag}:latest`);
    const listed = (await d.client.images.list()).find((i) => i.name === `${tag}:latest`)!;
    expect(listed).toMatchObject({ tag: 'latest', variant: 'prod', usedBy: { agents: ['mine'], sessions: [s.name], projects: [] } });
    expect(listed.sizeBytes).toBeGreaterThan(0);
    expect(((await d.client.images.remove({ name: `${tag}:latest` }).catch((e: unknown) => e)) as BerthError).code).toBe('IMAGE_IN_USE');
    await d.client.sessions.remove({ id: s.id });
    await d.client.agents.define({ name: 'mine', command: sh('sleep 3600') });
    expect(await d.client.images.remove({ name: `${tag}:dev` })).toEqual({ removed: `${tag}:dev` });
    expect((await d.client.images.list()).map((i) => i.name)).not.toContain(`${tag}:dev`);
    expect(((await d.client.images.remove({ name: `${tag}:dev` }).catch((e: unknown) => e)) as BerthError).code).toBe('IMAGE_NOT_FOUND');
  });

  it('lists every image an agent or project names, berth\'s or not, and marks one the engine lacks', async () => {
    // The busybox test image is no berth image (no claude-agent- prefix, no berth label).
    await d.client.agents.define({ name: 'plain', image: 'berth-test-busybox', command: sh('sleep 3600') });
    await d.client.agents.define({ name: 'ghostly', image: `${tag}-never-built:v1`, command: sh('sleep 3600') });
    const listed = await d.client.images.list();
    const plain = listed.find((i) => i.name === 'berth-test-busybox:latest')!;
    expect(plain).toMatchObject({ tag: 'latest', stack: null, usedBy: { agents: expect.arrayContaining(['plain']) } });
    expect(plain.id).toMatch(/^sha256:/);
    expect(plain.missing).toBeUndefined();
    const ghost = listed.find((i) => i.name === `${tag}-never-built:v1`)!;
    expect(ghost).toMatchObject({ missing: true, id: '', sizeBytes: 0, usedBy: { agents: ['ghostly'] } });
    const table = await exec(process.execPath, [BERTH_BIN, '--socket', d.socket, 'images'], { env: { PATH: process.env.PATH } });
    expect(table.stdout).toMatch(new RegExp(`^${tag}-never-built:v1\\s+\\(not on the engine\\)\\s+-\\s+-\\s+agent ghostly$`, 'm'));
    await d.client.agents.remove({ name: 'plain' });
    await d.client.agents.remove({ name: 'ghostly' });
    expect((await d.client.images.list()).map((i) => i.name)).not.toContain(`${tag}-never-built:v1`);
  });

  it('resolves the image: project default beats the agent, which beats devcontainer.json, which beats AGENT_DEFAULT_IMAGE', async () => {
    await d.client.agents.define({ name: 'plain', command: sh('sleep 3600'), readOnly: true });
    await d.client.agents.define({ name: 'picky', command: sh('sleep 3600'), readOnly: true, image: 'berth-test-empty:latest' });

    // devcontainer.json, image form (unsupported fields are only warned about)
    await mkdir(join(repo, '.devcontainer'), { recursive: true });
    await writeFile(join(repo, '.devcontainer', 'devcontainer.json'), '// comments are fine\n{ "image": "berth-test-busybox:latest", "features": {}, "forwardPorts": [3000], }\n');
    const a = await d.client.sessions.start({ project: 'web', agent: 'plain' });
    expect(a.image).toBe('berth-test-busybox:latest');
    await d.waitForLog(/devcontainer\.json: berth ignores features, forwardPorts/);
    const a2 = await d.client.sessions.start({ project: 'web', agent: 'plain' });
    expect(d.output.match(/berth ignores features, forwardPorts/g)).toHaveLength(1);

    // devcontainer.json, build form: built on first use, then reused
    await writeFile(join(repo, '.devcontainer', 'Dockerfile'), 'FROM berth-test-busybox:latest\nARG GREETING\nRUN echo "$GREETING" > /greeting\n');
    await writeFile(join(repo, '.devcontainer', 'devcontainer.json'), '{ "build": { "dockerfile": "Dockerfile", "context": "..", "args": { "GREETING": "hi from devcontainer" } } }\n');
    const b = await d.client.sessions.start({ project: 'web', agent: 'plain' });
    expect(b.image).toMatch(/^berth-devcontainer-web:[0-9a-f]{12}$/);
    expect((await d.client.sessions.exec({ id: b.id, cmd: ['cat', '/greeting'] })).stdout).toBe('hi from devcontainer\n');

    // the agent's own image beats the devcontainer
    const p = await d.client.sessions.start({ project: 'web', agent: 'picky' });
    expect(p.image).toBe('berth-test-empty:latest');

    // the project's pinned image beats the agent's
    await d.client.projects.update({ name: 'web', defaultImage: 'berth-test-busybox:latest' });
    const c = await d.client.sessions.start({ project: 'web', agent: 'picky' });
    expect(c.image).toBe('berth-test-busybox:latest');
    await d.client.projects.update({ name: 'web', defaultImage: null });
    for (const s of [a, a2, b, p, c]) await d.client.sessions.remove({ id: s.id });
    await docker('rmi', '-f', b.image).catch(() => {});
  });
});
