import { resolve } from 'node:path';
import type { Command } from 'commander';
import { BerthError, type ImageBuildProgress } from '../../protocol/index.js';
import { collect, ExitCode, parsePairs, type CliContext, usageError } from '../context.js';
import { cut, ids, ago, emit, line, table, type Out } from '../output.js';

/**
 * Build output: a progress bar per image on a TTY, `[image n/m] line` otherwise, NDJSON with --json.
 */
async function buildProgress(out: Out): Promise<{ update: (p: ImageBuildProgress) => void; stop: () => void }> {
  const bar = await out.progressBar(' {image} {bar} step {value}/{total}  {line}');
  let current: string | null = null;
  let started = false;
  const stop = () => {
    bar?.stop();
    started = false;
  };
  return {
    update: (p) => {
      if (out.json) return out.printJson({ progress: p });
      if (!bar) return out.printErr(`${line`[${p.name}${p.step ? ` ${p.step}/${p.total}` : ''}] ${p.line}`}\n`);
      if (p.name !== current) {
        stop();
        current = p.name;
      }
      if (!started && p.total) {
        bar.start(p.total, { image: p.name, line: '' });
        started = true;
      }
      if (started) bar.update(p.step ?? 0, { image: p.name, line: p.line.slice(0, 50) });
    },
    stop,
  };
}

function buildErrorSummary(e: { message: string; details?: Record<string, unknown> } | null): string {
  if (!e) return '';
  const lines = (e.details?.lines as string[] | undefined) ?? [];
  return lines.length ? `${e.message} (${lines.at(-1)!.slice(0, 80)})` : e.message;
}

/** The failed step's last lines, under the error. */
function showBuildFailure(out: Out, err: unknown): void {
  if (err instanceof BerthError && err.code === 'IMAGE_BUILD_FAILED' && !out.json) {
    const lines = (err.details?.lines as string[] | undefined) ?? [];
    if (lines.length) out.printErr(`${lines.map((l) => line`  | ${l}`).join('\n')}\n`);
  }
}

export function register(program: Command, { out, connect }: CliContext): void {
  const listImages = async (o: { quiet?: boolean; trunc: boolean }, cmd: Command) => {
      const noTrunc = !o.trunc;
      const list = await connect(cmd).images.list();
      if (o.quiet && !out.json) return out.print(ids(list.map((i) => i.name)));
      emit(out, list, () =>
        list.length
          ? table(
              ['IMAGE', 'ID', 'STACK', 'VARIANT', 'SIZE', 'CREATED', 'USED BY'],
              list.map((i) => [
                i.name,
                i.missing ? '(not on the engine)' : noTrunc ? i.id : i.id.replace(/^sha256:/, '').slice(0, 12),
                i.stack ?? '',
                i.variant ?? '',
                i.missing ? '-' : `${(i.sizeBytes / 1024 / 1024).toFixed(0)} MB`,
                i.missing ? '-' : ago(i.createdAt),
                cut([...i.usedBy.projects.map((p) => `project ${p}`), ...i.usedBy.agents.map((a) => `agent ${a}`), ...i.usedBy.sessions.map((s) => `session ${s}`)].join(', '), 60, noTrunc),
              ]),
            )
          : 'no agent images (berth image build-defaults builds the shipped ones)\n',
      );
  };
  program
    .command('images')
    .description('agent images (claude-agent-*, berth-built, and any other an agent, project or session names; marked when not on the engine), and who uses them')
    .option('-q, --quiet', 'only the names, one a line')
    .option('--no-trunc', 'full image ids, and who uses each in full')
    .action(listImages);

  const image = program.command('image').description('build, list and remove agent images');
  image
    .command('ls')
    .alias('list')
    .description('the same as berth images')
    .option('-q, --quiet', 'only the names, one a line')
    .option('--no-trunc', 'full image ids, and who uses each in full')
    .action(listImages);
  image
    .command('build <name>')
    .description(
      'build an image through the engine API: a shipped stack (berth image build claude-agent-node, or --stack node) or your Dockerfile (--file)',
    )
    .option('-f, --file <dockerfile>', 'the Dockerfile')
    .option('--stack <stack>', 'a shipped stack under images/ (base, node, python, browser, flutter)')
    .option('--context <dir>', 'build context (default: the Dockerfile\'s directory)')
    .option('--dev', 'the dev variant (VARIANT=dev; the default for a :dev tag)')
    .option('--build-arg <K=V>', 'build argument (repeatable)', collect, [])
    .option('--no-cache', 'rebuild every step')
    .action(async (name: string, o: { file?: string; stack?: string; context?: string; dev?: boolean; buildArg: string[]; cache: boolean }, cmd: Command) => {
      const params = {
        name,
        ...(o.file ? { dockerfile: resolve(o.file) } : {}),
        ...(o.stack ? { stack: o.stack } : {}),
        ...(o.context ? { context: resolve(o.context) } : {}),
        buildArgs: parsePairs('--build-arg', o.buildArg),
        ...(o.dev ? { variant: 'dev' as const } : {}),
        ...(o.cache ? {} : { noCache: true }),
      };
      const progress = await buildProgress(out);
      try {
        const r = await connect(cmd).buildImage(params, progress.update);
        progress.stop();
        emit(out, { result: r }, () => `built ${r.name} (${r.id.replace(/^sha256:/, '').slice(0, 12)})\n`);
      } catch (err) {
        progress.stop();
        showBuildFailure(out, err);
        throw err;
      }
    });
  image
    .command('build-defaults')
    .description('build the shipped images/ stacks in dependency order (claude-agent-base first)')
    .option('--stack <stack>', 'only this stack and what it extends (repeatable)', collect, [])
    .option('--variants <list>', 'prod, dev or prod,dev', 'prod')
    .option('--tag <tag>', 'tag for prod images (dev images get dev or <tag>-dev)')
    .option('--build-arg <K=V>', 'build argument for every image (repeatable), e.g. BASE_IMAGE=...', collect, [])
    .option('--no-cache', 'rebuild every step')
    .action(async (o: { stack: string[]; variants: string; tag?: string; buildArg: string[]; cache: boolean }, cmd: Command) => {
      const variants = o.variants.split(',').map((v) => v.trim());
      for (const v of variants) {
        if (v !== 'prod' && v !== 'dev') throw usageError(`--variants takes prod, dev or prod,dev; got ${JSON.stringify(o.variants)}`);
      }
      const progress = await buildProgress(out);
      let r;
      try {
        r = await connect(cmd).buildDefaultImages(
          {
            ...(o.stack.length ? { stacks: o.stack } : {}),
            variants: variants as ('prod' | 'dev')[],
            ...(o.tag ? { tag: o.tag } : {}),
            buildArgs: parsePairs('--build-arg', o.buildArg),
            ...(o.cache ? {} : { noCache: true }),
          },
          progress.update,
        );
      } finally {
        progress.stop();
      }
      emit(out, { result: r }, () =>
        table(
          ['IMAGE', 'STATUS', 'TIME', 'ID / ERROR'],
          r.images.map((i) => [
            i.name,
            i.status,
            i.seconds !== null ? `${i.seconds.toFixed(1)} s` : '',
            i.status === 'built' ? (i.id ?? '').replace(/^sha256:/, '').slice(0, 12) : `${i.error?.code ?? ''}: ${buildErrorSummary(i.error)}`,
          ]),
        ) + `${r.built} built, ${r.failed} failed, ${r.skipped} skipped\n`,
      );
      if (r.failed > 0 || r.skipped > 0) throw new ExitCode(1);
    });
  image
    .command('rm <name>')
    .alias('remove')
    .description('remove an image no session uses')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await connect(cmd).images.remove({ name });
      emit(out, r, () => `removed image ${r.removed}\n`);
    });
}
