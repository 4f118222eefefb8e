import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { homeOf, ownerIdentity } from './project-git.js';

let dir: string;
let repo: string;
let home: string;
beforeEach(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bt-id-')));
  repo = join(dir, 'repo');
  home = join(dir, 'home');
  mkdirSync(home);
  execFileSync('git', ['init', '-q', repo]);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("the project owner's git identity", () => {
  it("is read as git would: the repository's config, then ~/.gitconfig, then ~/.config/git/config", async () => {
    expect(await ownerIdentity(repo, home)).toMatchObject({ name: null });
    mkdirSync(join(home, '.config/git'), { recursive: true });
    writeFileSync(join(home, '.config/git/config'), '[user]\n\tname = Xdg Name\n\temail = xdg@example.com\n');
    expect(await ownerIdentity(repo, home)).toEqual({ name: 'Xdg Name', email: 'xdg@example.com' });
    writeFileSync(join(home, '.gitconfig'), '[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n');
    expect(await ownerIdentity(repo, home)).toEqual({ name: 'Ada Lovelace', email: 'ada@example.com' });
    execFileSync('git', ['-C', repo, 'config', 'user.email', 'ada@work.example']);
    expect(await ownerIdentity(repo, home)).toEqual({ name: 'Ada Lovelace', email: 'ada@work.example' });
  });

  it('follows no include, and a home the owner has none of gives no identity rather than an error', async () => {
    writeFileSync(join(dir, 'other'), '[user]\n\tname = Included\n');
    writeFileSync(join(home, '.gitconfig'), `[include]\n\tpath = ${join(dir, 'other')}\n`);
    expect((await ownerIdentity(repo, home)).name).not.toBe('Included');
    await expect(ownerIdentity(repo, join(dir, 'nowhere'))).resolves.toEqual({ name: null, email: null });
  });

  it('finds a home by uid in the passwd file', async () => {
    const passwd = join(dir, 'passwd');
    writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\nada:x:1234:1234:Ada,,,:/home/ada:/bin/sh\nbad:x:1235:1235::relative:/bin/sh\n');
    expect(await homeOf(1234, passwd)).toBe('/home/ada');
    expect(await homeOf(1235, passwd)).toBeNull();
    expect(await homeOf(4321, passwd)).toBeNull();
  });
});
