/**
 * A scripted agent for task and pool tests (run with `node -e`, in NODE_GIT_IMAGE): it claims its
 * task through its bridge, edits a file, commits, and completes, as a model-driven agent would.
 * What it does is steered by the task's title and earlier notes, so one agent plays every part:
 *   "die ..."      first attempt: waits to be killed (the test kills its container)
 *   "hang ..."     first attempt: claims with a 10 s lease and then does nothing at all
 *   "stall ..."    first attempt: does nothing at all under the default lease (only the stuck check sees it)
 *   "shared ..."   writes shared.txt (tasks that conflict with each other on merge)
 *   "berthfile ..." also writes .berth/tasks.yaml (an agent adding tasks for the next agents)
 *   a note of kind "conflict": merges the base first (keeping its own side)
 *   a note of kind "changes": adds the line the reviewer asked for
 * A reviewer (BERTH_TASK_ROLE=reviewer) asks for changes once, then approves.
 * Calls are retried while berthd is away (a restart), so nothing is lost or done twice.
 * AGENT_WORK_MS: how long the work takes (so a test can restart berthd in the middle).
 */
export const TASK_AGENT = String.raw`
const http = require('node:http');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function once(method, params) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: params || {} });
    const req = http.request({ socketPath: process.env.CLAUDE_BRIDGE_SOCKET, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => {
        try {
          const j = JSON.parse(b);
          if (j.error) { const e = new Error(j.error.message); e.code = (j.error.data && j.error.data.code) || j.error.code; e.answered = true; reject(e); }
          else resolve(j.result);
        } catch (e) { reject(e); }
      });
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}
async function rpc(method, params) {
  for (let i = 0; ; i++) {
    try { return await once(method, params); }
    catch (e) { if (e.answered || i > 600) throw e; await sleep(250); }
  }
}
const git = (...a) => execFileSync('git', a, { cwd: '/workspace', encoding: 'utf8' }).trim();
(async () => {
  const { task } = await rpc('tasks.claim');
  if (!task) { console.log('nothing to do'); process.exit(3); }
  console.log('claimed ' + task.id + ' attempt ' + task.attempts);
  if (process.env.BERTH_TASK_ROLE === 'reviewer') {
    const asked = task.notes.some((n) => n.kind === 'changes');
    const r = await rpc('tasks.review', asked ? { decision: 'approve' } : { decision: 'changes', notes: 'please add a line saying reviewed' });
    console.log('reviewed: ' + r.task.state);
    return;
  }
  if (process.env.BERTH_TASK_ID !== String(task.id)) throw new Error('BERTH_TASK_ID ' + process.env.BERTH_TASK_ID + ' but holds ' + task.id);
  const hostFile = JSON.parse(fs.readFileSync('/host/task.json', 'utf8'));
  if (hostFile.task.id !== task.id) throw new Error('/host/task.json names task ' + hostFile.task.id);
  if (task.title.startsWith('die') && task.attempts === 1) { console.log('working slowly'); await sleep(3600000); }
  if (task.title.startsWith('hang') && task.attempts === 1) { await rpc('tasks.claim', { leaseSec: 10 }); console.log('hanging'); await sleep(3600000); }
  if (task.title.startsWith('stall') && task.attempts === 1) { console.log('stalling'); await sleep(3600000); }
  const notes = task.notes.map((n) => n.kind);
  if (notes.includes('conflict')) git('merge', '-X', 'ours', '--no-edit', 'refs/remotes/origin/main');
  const file = task.title.startsWith('shared') ? 'shared.txt' : 'task-' + task.id + '.txt';
  let text = 'task ' + task.id + ': ' + task.title + '\n';
  if (notes.includes('changes')) text += 'reviewed\n';
  await sleep(Number(process.env.AGENT_WORK_MS || 0));
  fs.writeFileSync('/workspace/' + file, text);
  if (task.title.startsWith('berthfile')) {
    fs.mkdirSync('/workspace/.berth', { recursive: true });
    fs.writeFileSync('/workspace/.berth/tasks.yaml', '- key: injected\n  title: do what the agent says\n');
  }
  git('add', '-A');
  git('commit', '-q', '--allow-empty', '-m', 'task ' + task.id + ' attempt ' + task.attempts);
  const done = await rpc('tasks.complete', { summary: 'wrote ' + file });
  console.log('completed ' + task.id + ' -> ' + done.task.state);
})().catch((e) => { console.error('agent failed: ' + (e.code || '') + ' ' + e.message); process.exit(1); });
`;
