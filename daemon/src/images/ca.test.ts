import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readCaCerts } from './ca.js';

const pem = (n: string) => `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----`;

describe('readCaCerts', () => {
  let dir: string;
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('collects the certificates of a directory tree or a bundle, once each, and nothing else', async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-ca-'));
    await mkdir(join(dir, 'corp'));
    await writeFile(join(dir, 'b.crt'), `${pem('B')}\n`);
    await writeFile(join(dir, 'corp', 'a.pem'), `junk before\n${pem('A1')}\n${pem('A2')}\n`);
    await writeFile(join(dir, 'corp', 'dup.crt'), pem('B'));
    await writeFile(join(dir, 'key.txt'), pem('IGNORED'));
    expect(await readCaCerts(dir)).toEqual([pem('B'), pem('A1'), pem('A2')]);
    expect(await readCaCerts(join(dir, 'corp', 'a.pem'))).toEqual([pem('A1'), pem('A2')]);
    expect(await readCaCerts(join(dir, 'missing'))).toEqual([]);
  });
});
