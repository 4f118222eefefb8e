import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative } from 'node:path';
import { BerthError, type ImageBuildResult, type ImageSummary, type ParamsOf } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { BuildProgress, ContainerRuntime } from '../runtime/port.js';
import type { AgentsRepo } from '../store/agents.js';
import type { ProjectsRepo } from '../store/projects.js';
import type { SessionsRepo } from '../store/sessions.js';

/** Image labels berth sets on what it builds. */
export const IMAGE_LABELS = {
  image: 'dev.berth.image',
  stack: 'dev.berth.image.stack',
  variant: 'dev.berth.image.variant',
} as const;

/** The earlier task list's naming convention for agent images. */
export const IMAGE_PREFIX = 'claude-agent-';

const withTag = (name: string) => (/:[^/]+$/.test(name) ? name : `${name}:latest`);

/** Agent images: the catalog (with who uses what), builds through the engine, removal. */
export class ImageService {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly repos: { agents: AgentsRepo; projects: ProjectsRepo; sessions: SessionsRepo },
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly defaultImage: string,
  ) {}

  async list(): Promise<ImageSummary[]> {
    const images = await this.runtime.images({ namePrefix: IMAGE_PREFIX, label: IMAGE_LABELS.image });
    const agents = this.repos.agents.list();
    const projects = this.repos.projects.list();
    const sessions = this.repos.sessions.all().filter((s) => s.desired !== 'removed');
    const out: ImageSummary[] = [];
    for (const img of images) {
      for (const tag of img.tags.length ? img.tags : [img.id]) {
        const uses = (ref: string | null) => ref !== null && withTag(ref) === withTag(tag);
        out.push({
          name: tag,
          id: img.id,
          stack: img.labels[IMAGE_LABELS.stack] ?? null,
          variant: img.labels[IMAGE_LABELS.variant] ?? null,
          sizeBytes: img.sizeBytes,
          createdAt: img.createdAt,
          usedBy: {
            agents: agents.filter((a) => uses(a.image ?? this.defaultImage)).map((a) => a.name),
            projects: projects.filter((p) => uses(p.defaultImage)).map((p) => p.name),
            sessions: sessions.filter((s) => uses(s.spec.image)).map((s) => s.name),
          },
        });
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Removes an image no session uses (the engine also refuses one a container still holds). */
  async remove(name: string): Promise<{ removed: string }> {
    const users = this.repos.sessions.all().filter((s) => s.desired !== 'removed' && withTag(s.spec.image) === withTag(name));
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
   * Builds `dockerfile` (context: its directory unless given) as `name` through the engine API,
   * announcing each output line on /events (and to `onProgress`, for a streaming caller).
   */
  async build(p: ParamsOf<'images.build'>, onProgress?: (p: BuildProgress) => void): Promise<ImageBuildResult> {
    if (!isAbsolute(p.dockerfile)) throw new BerthError('INVALID_PARAMS', 'dockerfile must be an absolute path', { details: { dockerfile: p.dockerfile } });
    const context = p.context ?? dirname(p.dockerfile);
    if (!isAbsolute(context)) throw new BerthError('INVALID_PARAMS', 'context must be an absolute path', { details: { context } });
    const [df, ctx] = await Promise.all([stat(p.dockerfile).catch(() => null), stat(context).catch(() => null)]);
    if (!df?.isFile()) throw new BerthError('PATH_NOT_FOUND', `Dockerfile ${p.dockerfile} does not exist`, { details: { dockerfile: p.dockerfile } });
    if (!ctx?.isDirectory()) throw new BerthError('PATH_NOT_FOUND', `build context ${context} is not a directory`, { details: { context } });
    const rel = relative(context, p.dockerfile);
    if (rel.startsWith('..') || isAbsolute(rel)) {
      throw new BerthError('INVALID_PARAMS', `the Dockerfile must be inside the build context ${context}`, { details: { dockerfile: p.dockerfile, context } });
    }
    const variant = p.variant ?? 'prod';
    const name = withTag(p.name);
    // A Dockerfile with `prod`/`dev` stages builds the one asked for (and only it).
    const stages = [...(await readFile(p.dockerfile, 'utf8')).matchAll(/^\s*FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]!.toLowerCase());
    this.log.info({ image: name, dockerfile: p.dockerfile, context }, 'Building image');
    const res = await this.runtime.build(
      {
        tag: name,
        context,
        dockerfile: rel,
        buildArgs: { VARIANT: variant, ...p.buildArgs },
        labels: { [IMAGE_LABELS.image]: 'true', [IMAGE_LABELS.variant]: variant },
        ...(stages.includes(variant) ? { target: variant } : {}),
      },
      (progress) => {
        this.bus.publish('image.build', { name, ...progress });
        onProgress?.(progress);
      },
    );
    const result = { name, id: res.id, steps: res.steps };
    this.bus.publish('image.built', result);
    this.log.info({ image: name, id: res.id }, 'Built image');
    return result;
  }
}
