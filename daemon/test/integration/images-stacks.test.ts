import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, type ImageBuildProgress } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { BERTH_BIN, sh, startWithProject, tempDir, type DaemonProcess } from '../helpers/daemon.js';

const exec = promisify(execFile);

/**
 * Stacks (images/<name>/Dockerfile extending each other through `ARG BASE=claude-agent-<parent>`),
 * images.buildDefaults and stack builds, on the real engine with a small images/ tree of busybox
 * stacks given to berthd as BERTH_IMAGES_DIR. The shipped stacks are built in images-shipped.test.ts.
 */
describe('image stacks and images.buildDefaults', () => {
  let d: DaemonProcess;
  let imagesDir: string;
  const tag = `bt${Date.now().toString(36)}`;
  const cert = '-----BEGIN CERTIFICATE-----\nMIIBberthTestOnly\n-----END CERTIFICATE-----';
  const built = new Set<string>();

  beforeAll(async () => {
    imagesDir = await tempDir('bt-images-');
    const stack = async (name: string, dockerfile: string) => {
      await mkdir(join(imagesDir, 'stacks', name), { recursive: true });
      await writeFile(join(imagesDir, 'stacks', name, 'Dockerfile'), dockerfile);
    };
    await stack(
      'base',
      [
        'FROM berth-test-busybox:latest AS prod',
        'ARG EXTRA_CA_CERTS=',
        'RUN printf "%s" "$EXTRA_CA_CERTS" > /ca.pem',
        'FROM prod AS dev',
        'RUN echo dev > /dev-tools',
        '',
      ].join('\n'),
    );
    await stack('tool', 'ARG BASE=claude-agent-base\nFROM ${BASE}\nRUN echo tool > /tool\n');
    await stack('broken', 'ARG BASE=claude-agent-base\nFROM ${BASE}\nRUN echo about to fail && exit 3\n');
    await stack('leaf', 'ARG BASE=claude-agent-broken\nFROM ${BASE}\nRUN echo never\n');
    await mkdir(join(imagesDir, 'ca'));
    await writeFile(join(imagesDir, 'ca', 'corp.crt'), `${cert}\n`);
    ({ d } = await startWithProject({
      env: { BERTH_IMAGES_DIR: join(imagesDir, 'stacks'), BERTH_BUILD_CA_CERTS: join(imagesDir, 'ca') },
    }));
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    for (const name of built) await docker('rmi', '-f', name).catch(() => {});
    await rm(imagesDir, { recursive: true, force: true });
  });

  it('builds every stack in dependency order and variant, goes on past a failure, and skips what extends it', async () => {
    const progress: ImageBuildProgress[] = [];
    const r = await d.client.buildDefaultImages({ variants: ['prod', 'dev'], tag }, (p) => progress.push(p));
    for (const i of r.images) if (i.status === 'built') built.add(i.name);
    expect(r.images.map((i) => [i.name, i.status])).toEqual([
      [`claude-agent-base:${tag}`, 'built'],
      [`claude-agent-base:${tag}-dev`, 'built'],
      [`claude-agent-broken:${tag}`, 'failed'],
      [`claude-agent-broken:${tag}-dev`, 'failed'],
      [`claude-agent-leaf:${tag}`, 'skipped'],
      [`claude-agent-leaf:${tag}-dev`, 'skipped'],
      [`claude-agent-tool:${tag}`, 'built'],
      [`claude-agent-tool:${tag}-dev`, 'built'],
    ]);
    expect(r).toMatchObject({ built: 4, failed: 2, skipped: 2 });
    const broken = r.images.find((i) => i.name === `claude-agent-broken:${tag}`)!;
    expect(broken.error).toMatchObject({ code: 'IMAGE_BUILD_FAILED', details: { lines: expect.arrayContaining(['about to fail']) } });
    expect(r.images.find((i) => i.name === `claude-agent-leaf:${tag}`)!.error!.code).toBe('IMAGE_NOT_FOUND');
    expect(new Set(progress.map((p) => p.name))).toEqual(
      new Set([`claude-agent-base:${tag}`, `claude-agent-base:${tag}-dev`, `claude-agent-broken:${tag}`, `claude-agent-broken:${tag}-dev`, `claude-agent-tool:${tag}`, `claude-agent-tool:${tag}-dev`]),
    );

    // A stack is built on its parent of the same variant, labelled with its stack and variant.
    expect(await docker('run', '--rm', `claude-agent-tool:${tag}-dev`, 'cat', '/tool', '/dev-tools')).toBe('tool\ndev');
    expect(await docker('run', '--rm', `claude-agent-tool:${tag}`, 'sh', '-c', 'cat /tool; test -e /dev-tools && echo has-dev-tools || echo prod')).toBe('tool\nprod');
    const labels = JSON.parse(await docker('image', 'inspect', '-f', '{{json .Config.Labels}}', `claude-agent-tool:${tag}-dev`));
    expect(labels).toMatchObject({ 'dev.berth.image': 'true', 'dev.berth.image.stack': 'tool', 'dev.berth.image.variant': 'dev' });
    // The configured local certificate authorities reach Dockerfiles that ask for them.
    expect(await docker('run', '--rm', `claude-agent-tool:${tag}`, 'cat', '/ca.pem')).toBe(cert);
    const listed = (await d.client.images.list()).filter((i) => i.name.endsWith(`:${tag}`)).map((i) => [i.name, i.stack, i.variant]);
    expect(listed).toEqual([
      [`claude-agent-base:${tag}`, 'base', 'prod'],
      [`claude-agent-tool:${tag}`, 'tool', 'prod'],
    ]);
  });

  it('builds one stack by name or by --stack on the parent of its variant, and says what to build when the parent is missing', async () => {
    const byName = await d.client.images.build({ name: `claude-agent-tool:${tag}-again`, buildArgs: { BASE: `claude-agent-base:${tag}` } });
    built.add(byName.name);
    expect((await d.client.images.list()).find((i) => i.name === byName.name)).toMatchObject({ stack: 'tool', variant: 'prod' });

    const missing = (await d.client.images.build({ name: `claude-agent-tool:${tag}-dev`, stack: 'tool', buildArgs: { BASE: `claude-agent-base:${tag}-nowhere` } }).catch((e: unknown) => e)) as BerthError;
    expect(missing.code).toBe('IMAGE_NOT_FOUND');
    expect(missing.details).toMatchObject({ image: `claude-agent-base:${tag}-nowhere`, stack: 'tool' });
    expect(missing.hint).toContain(`berth image build-defaults --stack tool --variants dev --tag ${tag}`);

    const bad = async (p: Parameters<typeof d.client.images.build>[0]) => ((await d.client.images.build(p).catch((e: unknown) => e)) as BerthError).code;
    expect(await bad({ name: 'my-image' })).toBe('INVALID_PARAMS');
    expect(await bad({ name: 'my-image', stack: 'rust' })).toBe('INVALID_PARAMS');
    expect(await bad({ name: 'my-image', stack: 'tool', dockerfile: join(imagesDir, 'stacks', 'tool', 'Dockerfile') })).toBe('INVALID_PARAMS');
    expect(((await d.client.images.buildDefaults({ stacks: ['rust'] }).catch((e: unknown) => e)) as BerthError).code).toBe('INVALID_PARAMS');
  });

  it('a session on a missing stack image fails before start with the command that builds it', async () => {
    await d.client.agents.define({ name: 'tooled', image: `claude-agent-tool:${tag}-v2`, command: sh('sleep 3600'), readOnly: true });
    const err = (await d.client.sessions.start({ project: 'web', agent: 'tooled' }).catch((e: unknown) => e)) as BerthError;
    expect(err.code).toBe('IMAGE_NOT_FOUND');
    expect(err.hint).toContain(`berth image build-defaults --stack tool --tag ${tag}-v2`);
  });

  it('the CLI builds defaults with one line per image and exits non-zero when one failed', async () => {
    const run = exec(process.execPath, [BERTH_BIN, '--socket', d.socket, 'image', 'build-defaults', '--stack', 'leaf', '--stack', 'tool', '--tag', tag]);
    const err = (await run.catch((e: unknown) => e)) as { code: number; stdout: string; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stdout).toMatch(new RegExp(`^claude-agent-base:${tag} +built +[\\d.]+ s +[0-9a-f]{12}$`, 'm'));
    expect(err.stdout).toMatch(new RegExp(`^claude-agent-broken:${tag} +failed .*IMAGE_BUILD_FAILED`, 'm'));
    expect(err.stdout).toMatch(new RegExp(`^claude-agent-leaf:${tag} +skipped +IMAGE_NOT_FOUND`, 'm'));
    expect(err.stdout).toMatch(/^2 built, 1 failed, 1 skipped$/m);
    expect(err.stderr).toMatch(new RegExp(`^\\[claude-agent-tool:${tag} 1/\\d+\\] Step 1/\\d+ : ARG BASE`, 'm'));
  });
});
