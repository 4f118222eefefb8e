import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative } from 'node:path';
import {
  BerthError,
  type DefaultImageOutcome,
  type DefaultImagesResult,
  type ImageBuildProgress,
  type ImageBuildResult,
  type ImageSummary,
  type ParamsOf,
} from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import { LABELS } from '../runtime/labels.js';
import type { ContainerRuntime, ImageRecord } from '../runtime/port.js';
import type { AgentsRepo } from '../store/agents.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionsRepo } from '../store/sessions.js';
import { readCaCerts } from './ca.js';
import { IMAGE_PREFIX, PARENT_ARG, buildOrder, parseDockerfile, readStacks, stackImageName, stackOfName, tagOf, variantOfTag, type Stack } from './stacks.js';

/** Image labels berth sets on what it builds. */
export const IMAGE_LABELS = {
  image: 'dev.berth.image',
  stack: 'dev.berth.image.stack',
  variant: 'dev.berth.image.variant',
} as const;

const withTag = (name: string) => (tagOf(name) !== null ? name : `${name}:latest`);
/** The ways a spec may name the same image: with its tag, and without it when the tag is latest. */
const spellings = (name: string) => {
  const full = withTag(name);
  return full.endsWith(':latest') ? [full, full.slice(0, -':latest'.length)] : [full];
};

export interface ImageServiceOptions {
  /** AGENT_DEFAULT_IMAGE: what agents without an image run. */
  defaultImage: string;
  /** The shipped images/ directory: one stack per `<name>/Dockerfile`. */
  imagesDir: string;
  /** PEM file or directory passed as EXTRA_CA_CERTS to Dockerfiles that declare it; `none`: nothing. */
  buildCaCerts: string;
  /** This berthd's id, labelled on what it builds so its image sweep (maintenance) touches only its own. */
  instanceId?: string;
}

/** Agent images: the catalog (with who uses what), builds through the engine, removal. */
export class ImageService {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly repos: { agents: AgentsRepo; projects: ProjectsRepo; sessions: SessionsRepo },
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly opts: ImageServiceOptions,
  ) {}

  /** AGENT_DEFAULT_IMAGE changed live. */
  setDefaultImage(name: string): void {
    this.opts.defaultImage = name;
  }

  /** The shipped stacks, read afresh (the directory may change while berthd runs). */
  stacks(): Promise<Stack[]> {
    return readStacks(this.opts.imagesDir);
  }

  /** The command that builds `image`, for IMAGE_NOT_FOUND hints. */
  async buildCommand(image: string, dockerfile?: string | null): Promise<string> {
    if (dockerfile) return `berth image build ${image} --file ${dockerfile}`;
    const stack = stackOfName(image, await this.stacks());
    if (!stack) return `berth image build ${image} --file path/to/Dockerfile`;
    if (!stack.parent) return `berth image build ${image}`;
    // build-defaults also builds what it extends; the tag it takes is the prod one.
    const variant = variantOfTag(image);
    const tag = tagOf(image) ?? 'latest';
    const prodTag = variant === 'prod' ? tag : tag === 'dev' ? 'latest' : tag.slice(0, -'-dev'.length);
    return `berth image build-defaults --stack ${stack.name}${variant === 'dev' ? ' --variants dev' : ''}${prodTag !== 'latest' ? ` --tag ${prodTag}` : ''}`;
  }

  /**
   * berth's images (claude-agent-*, and what berth built), and every other image an agent, a project,
   * the daemon's default or a session refers to: from the engine when it has it, else marked
   * `missing` (a session of that agent would fail with IMAGE_NOT_FOUND).
   */
  async list(): Promise<ImageSummary[]> {
    const images = await this.runtime.images({ namePrefix: IMAGE_PREFIX, label: IMAGE_LABELS.image });
    const agents = this.repos.agents.list();
    const projects = this.repos.projects.list();
    const summary = (name: string, img: ImageRecord | null): ImageSummary => {
      const uses = (ref: string | null) => ref !== null && withTag(ref) === withTag(name);
      return {
        name,
        tag: img && !img.tags.length ? null : tagOf(withTag(name)),
        id: img?.id ?? '',
        stack: img?.labels[IMAGE_LABELS.stack] ?? null,
        variant: img?.labels[IMAGE_LABELS.variant] ?? null,
        sizeBytes: img?.sizeBytes ?? 0,
        createdAt: img?.createdAt ?? '',
        ...(img ? {} : { missing: true }),
        usedBy: {
          agents: agents.filter((a) => uses(a.image ?? this.opts.defaultImage)).map((a) => a.name),
          projects: projects.filter((p) => uses(p.defaultImage)).map((p) => p.name),
          sessions: this.repos.sessions.usingImage(spellings(name)).map((s) => s.name),
        },
      };
    };
    const out: ImageSummary[] = [];
    const listed = new Set<string>();
    for (const img of images) {
      for (const tag of img.tags.length ? img.tags : [img.id]) {
        out.push({ ...summary(tag, img), tag: img.tags.length ? tagOf(tag) : null });
        listed.add(withTag(tag));
      }
    }
    const referred = new Set<string>(
      [this.opts.defaultImage, ...agents.map((a) => a.image), ...projects.map((p) => p.defaultImage), ...this.repos.sessions.activeImages()]
        .filter((r): r is string => !!r)
        .map(withTag),
    );
    for (const ref of [...referred].filter((r) => !listed.has(r))) {
      const info = await this.runtime.image(ref);
      out.push(summary(ref, info ? { ...info, labels: {} } : null));
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Removes an image no session uses (the engine also refuses one a container still holds). */
  async remove(name: string): Promise<{ removed: string }> {
    const users = this.repos.sessions.usingImage(spellings(name));
    if (users.length) {
      throw new BerthError('IMAGE_IN_USE', `image ${name} is used by session(s) ${users.map((s) => s.name).join(', ')}`, {
        details: { image: name, sessions: users.map((s) => s.id) },
      });
    }
    await this.runtime.removeImage(name);
    this.bus.publish('image.removed', { name });
    this.log.info({ image: name }, 'Removed image');
    return { removed: name };
  }

  /**
   * Builds `name` through the engine API from a Dockerfile (context: its directory unless given) or
   * a shipped stack, announcing each output line on /events (and to `onProgress`, for a streaming
   * caller). A stack is built on its parent of the same variant, which must exist.
   */
  async build(p: ParamsOf<'images.build'>, onProgress?: (p: ImageBuildProgress) => void): Promise<ImageBuildResult> {
    const name = withTag(p.name);
    const variant = p.variant ?? variantOfTag(name);
    let dockerfile: string;
    let context: string;
    let stack: Stack | null = null;
    const buildArgs: Record<string, string> = { VARIANT: variant, ...p.buildArgs };
    if (p.dockerfile !== undefined && p.stack !== undefined) {
      throw new BerthError('INVALID_PARAMS', 'give either dockerfile or stack, not both', { details: { dockerfile: p.dockerfile, stack: p.stack } });
    }
    if (p.dockerfile === undefined) {
      const stacks = await this.stacks();
      stack = p.stack !== undefined ? buildOrder(stacks, [p.stack]).at(-1)! : stackOfName(name, stacks);
      if (!stack) {
        throw new BerthError('INVALID_PARAMS', `${p.name} is not a shipped stack: give a dockerfile, or a stack (${stacks.map((s) => s.name).join(', ') || 'none ship'})`, {
          details: { name: p.name, stacks: stacks.map((s) => s.name) },
        });
      }
      dockerfile = stack.dockerfile;
      context = p.context ?? stack.dir;
      if (stack.parent && buildArgs[PARENT_ARG] === undefined) buildArgs[PARENT_ARG] = stackImageName(stack.parent, variant);
      const parent = buildArgs[PARENT_ARG];
      if (stack.parent && parent && !(await this.runtime.image(parent))) {
        throw new BerthError('IMAGE_NOT_FOUND', `${stack.name} extends ${parent}, which is not on the engine`, {
          hint: `Build it first (\`${await this.buildCommand(parent)}\`), or both at once: \`${await this.buildCommand(name)}\`.`,
          details: { image: parent, stack: stack.name },
        });
      }
    } else {
      dockerfile = p.dockerfile;
      context = p.context ?? dirname(p.dockerfile);
    }
    if (!isAbsolute(dockerfile)) throw new BerthError('INVALID_PARAMS', 'dockerfile must be an absolute path', { details: { dockerfile } });
    if (!isAbsolute(context)) throw new BerthError('INVALID_PARAMS', 'context must be an absolute path', { details: { context } });
    const [df, ctx] = await Promise.all([stat(dockerfile).catch(() => null), stat(context).catch(() => null)]);
    if (!df?.isFile()) throw new BerthError('PATH_NOT_FOUND', `Dockerfile ${dockerfile} does not exist`, { details: { dockerfile } });
    if (!ctx?.isDirectory()) throw new BerthError('PATH_NOT_FOUND', `build context ${context} is not a directory`, { details: { context } });
    const rel = relative(context, dockerfile);
    if (rel.startsWith('..') || isAbsolute(rel)) {
      throw new BerthError('INVALID_PARAMS', `the Dockerfile must be inside the build context ${context}`, { details: { dockerfile, context } });
    }
    const { stages, args } = stack ?? parseDockerfile(await readFile(dockerfile, 'utf8'));
    if (args.includes(CA_ARG) && buildArgs[CA_ARG] === undefined && this.opts.buildCaCerts !== 'none') {
      const certs = await readCaCerts(this.opts.buildCaCerts);
      if (certs.length) buildArgs[CA_ARG] = certs.join('\n');
    }
    this.log.info({ image: name, dockerfile, context, variant }, 'Building image');
    const res = await this.runtime.build(
      {
        tag: name,
        context,
        dockerfile: rel,
        buildArgs,
        labels: {
          [IMAGE_LABELS.image]: 'true',
          [IMAGE_LABELS.variant]: variant,
          ...(stack ? { [IMAGE_LABELS.stack]: stack.name } : {}),
          ...(this.opts.instanceId ? { [LABELS.instance]: this.opts.instanceId } : {}),
        },
        // A Dockerfile with `prod`/`dev` stages builds the one asked for (and only it).
        ...(stages.includes(variant) ? { target: variant } : {}),
        ...(p.noCache ? { noCache: true } : {}),
      },
      (progress) => {
        const event = { name, ...progress };
        this.bus.publish('image.build', event);
        onProgress?.(event);
      },
    );
    const result = { name, id: res.id, steps: res.steps };
    this.bus.publish('image.built', result);
    this.log.info({ image: name, id: res.id }, 'Built image');
    return result;
  }

  /**
   * The shipped stacks (all, or the ones named and what they extend), parents first, each variant
   * asked for. A failed image does not stop the others; whatever extends it is skipped.
   */
  async buildDefaults(p: ParamsOf<'images.buildDefaults'>, onProgress?: (p: ImageBuildProgress) => void): Promise<DefaultImagesResult> {
    const stacks = await this.stacks();
    if (!stacks.length) {
      throw new BerthError('PATH_NOT_FOUND', `no images ship in ${this.opts.imagesDir}`, {
        hint: 'Set BERTH_IMAGES_DIR (imagesDir) to the images/ directory of a berth checkout.',
        details: { imagesDir: this.opts.imagesDir },
      });
    }
    const order = buildOrder(stacks, p.stacks);
    const variants = [...new Set(p.variants?.length ? p.variants : (['prod'] as const))];
    const outcomes: DefaultImageOutcome[] = [];
    const byKey = new Map<string, DefaultImageOutcome>();
    for (const stack of order) {
      for (const variant of variants) {
        const name = stackImageName(stack.name, variant, p.tag);
        const parent = stack.parent !== null ? byKey.get(`${stack.parent}/${variant}`) : undefined;
        let outcome: DefaultImageOutcome;
        if (parent && parent.status !== 'built') {
          outcome = {
            stack: stack.name,
            variant,
            name,
            status: 'skipped',
            id: null,
            seconds: null,
            error: { code: 'IMAGE_NOT_FOUND', message: `not built: ${parent.name}, which it extends, ${parent.status === 'failed' ? 'failed' : 'was skipped'}` },
          };
        } else {
          const t0 = performance.now();
          try {
            const r = await this.build(
              {
                name,
                stack: stack.name,
                variant,
                buildArgs: { ...p.buildArgs, ...(parent ? { [PARENT_ARG]: parent.name } : {}) },
                ...(p.noCache ? { noCache: true } : {}),
              },
              onProgress,
            );
            outcome = { stack: stack.name, variant, name, status: 'built', id: r.id, seconds: round((performance.now() - t0) / 1000), error: null };
          } catch (err) {
            const e = err instanceof BerthError ? err : new BerthError('INTERNAL_ERROR', (err as Error).message);
            this.log.warn({ image: name, code: e.code }, `Failed to build ${name}: ${e.message}`);
            outcome = {
              stack: stack.name,
              variant,
              name,
              status: 'failed',
              id: null,
              seconds: round((performance.now() - t0) / 1000),
              error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) },
            };
          }
        }
        byKey.set(`${stack.name}/${variant}`, outcome);
        outcomes.push(outcome);
      }
    }
    const count = (s: DefaultImageOutcome['status']) => outcomes.filter((o) => o.status === s).length;
    return { images: outcomes, built: count('built'), failed: count('failed'), skipped: count('skipped') };
  }
}

/** The build argument through which Dockerfiles take the host's local certificate authorities. */
const CA_ARG = 'EXTRA_CA_CERTS';

const round = (n: number) => Math.round(n * 10) / 10;
