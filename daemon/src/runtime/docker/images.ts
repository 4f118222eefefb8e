import type { Readable } from 'node:stream';
import tarFs from 'tar-fs';
import type Docker from 'dockerode';
import { BerthError } from '@berth/client-sdk/protocol';
import type { BuildProgress, BuildRequest, ImageInfo, ImageRecord } from '../port.js';
import { engineMessage, status, wrapTransport } from './errors.js';
import { jsonLines } from './streams.js';

/** Images on the engine: listing berth's, removing one, building one from a context directory. */
export class DockerImages {
  constructor(
    private readonly docker: Docker,
    private readonly streams: Docker,
    private readonly host: string,
  ) {}

  async image(ref: string): Promise<ImageInfo | null> {
    try {
      const i = await this.docker.getImage(ref).inspect();
      return { id: i.Id, tags: i.RepoTags ?? [], sizeBytes: i.Size, createdAt: i.Created };
    } catch (err) {
      if (status(err) === 404) return null;
      wrapTransport(err, this.host);
    }
  }

  async images(match: { namePrefix: string; label: string }): Promise<ImageRecord[]> {
    try {
      const rows = await this.docker.listImages({ all: false });
      return rows
        .filter((r) => (r.RepoTags ?? []).some((t) => t.startsWith(match.namePrefix)) || (r.Labels ?? {})[match.label] === 'true')
        .map((r) => ({
          id: r.Id,
          tags: (r.RepoTags ?? []).filter((t) => t !== '<none>:<none>'),
          sizeBytes: r.Size,
          createdAt: new Date(r.Created * 1000).toISOString(),
          labels: r.Labels ?? {},
        }));
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async danglingImages(labels: Record<string, string>): Promise<ImageRecord[]> {
    try {
      const filters = { dangling: ['true'], label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) };
      const [rows, containers] = await Promise.all([this.docker.listImages({ all: false, filters: JSON.stringify(filters) }), this.docker.listContainers({ all: true })]);
      const used = new Set(containers.map((c) => c.ImageID));
      return rows
        .filter((r) => !used.has(r.Id) && Object.entries(labels).every(([k, v]) => (r.Labels ?? {})[k] === v))
        .map((r) => ({ id: r.Id, tags: [], sizeBytes: r.Size, createdAt: new Date(r.Created * 1000).toISOString(), labels: r.Labels ?? {} }));
    } catch (err) {
      wrapTransport(err, this.host);
    }
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: false, noprune: false });
    } catch (err) {
      if (status(err) === 404) throw new BerthError('IMAGE_NOT_FOUND', `image ${ref} is not on the engine`, { details: { image: ref } });
      if (status(err) === 409) throw new BerthError('IMAGE_IN_USE', `image ${ref} is used by a container: ${engineMessage(err)}`, { details: { image: ref } });
      wrapTransport(err, this.host);
    }
  }

  async build(req: BuildRequest, onProgress: (p: BuildProgress) => void): Promise<{ id: string; steps: number | null }> {
    const tarStream = tarFs.pack(req.context, { dereference: false });
    let stream: Readable;
    try {
      stream = (await this.streams.buildImage(tarStream as unknown as NodeJS.ReadableStream, {
        t: req.tag,
        dockerfile: req.dockerfile,
        buildargs: req.buildArgs,
        labels: req.labels,
        rm: true,
        forcerm: true,
        ...(req.target ? { target: req.target } : {}),
        ...(req.noCache ? { nocache: true } : {}),
      })) as unknown as Readable;
    } catch (err) {
      if (status(err) !== undefined) throw new BerthError('IMAGE_BUILD_FAILED', `the engine refused the build: ${engineMessage(err)}`, { details: { step: null, lines: [] } });
      wrapTransport(err, this.host);
    }
    let step: number | null = null;
    let total: number | null = null;
    let stepLine = '';
    const last: string[] = [];
    let id: string | null = null;
    let failure: string | null = null;
    const handle = (msg: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string } }) => {
      if (msg.aux?.ID) id = msg.aux.ID;
      if (msg.error) failure = msg.errorDetail?.message ?? msg.error;
      for (const raw of (msg.stream ?? '').split('\n')) {
        const line = raw.replace(/\r$/, '');
        if (!line.trim()) continue;
        const m = /^Step (\d+)\/(\d+) : (.*)$/.exec(line);
        if (m) {
          step = Number(m[1]);
          total = Number(m[2]);
          stepLine = m[3]!;
          last.length = 0;
        } else {
          last.push(line);
          if (last.length > 20) last.shift();
        }
        const built = /^Successfully built ([0-9a-f]+)$/.exec(line);
        if (built && !id) id = built[1]!;
        onProgress({ step, total, line });
      }
    };
    for await (const msg of jsonLines<Parameters<typeof handle>[0]>(stream)) handle(msg);
    if (failure) {
      throw new BerthError('IMAGE_BUILD_FAILED', `building ${req.tag} failed at step ${step ?? '?'}${total ? `/${total}` : ''} (${stepLine}): ${failure}`, {
        details: { step, total, instruction: stepLine, lines: [...last], error: failure },
      });
    }
    const info = await this.image(req.tag);
    return { id: info?.id ?? id ?? '', steps: total };
  }
}
