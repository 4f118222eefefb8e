import type { FastifyPluginAsync } from 'fastify';
import { BerthError, streamRoutes, type ImageBuildProgress } from '@berth/client-sdk/protocol';
import type { ImageService } from '../../images/service.js';
import { validParams } from '../dispatcher.js';
import { ndjson, refuse, type OpenStreams } from '../wire.js';

/**
 * The `images.build` and `images.buildDefaults` streams: the same builds as the methods, params
 * checked by the same schemas, with `{progress}` lines as output comes, then `{result}` or `{error}`.
 */
export const buildRoutes: FastifyPluginAsync<{ images: ImageService; streams: OpenStreams }> = async (app, { images, streams }) => {
  const builds = {
    'images.build': (p: never, on: (x: ImageBuildProgress) => void) => images.build(p, on),
    'images.buildDefaults': (p: never, on: (x: ImageBuildProgress) => void) => images.buildDefaults(p, on),
  } as const;
  for (const [method, run] of Object.entries(builds) as [keyof typeof builds, (typeof builds)[keyof typeof builds]][]) {
    app.post(streamRoutes[method].path, async (req, reply) => {
      let params: unknown;
      try {
        let raw: unknown;
        try {
          raw = JSON.parse(typeof req.body === 'string' ? req.body : '');
        } catch {
          throw new BerthError('PARSE_ERROR', 'body must be JSON');
        }
        params = validParams(method, raw);
      } catch (err) {
        return refuse(reply, err);
      }
      const out = ndjson(reply, streams);
      try {
        const result = await run(params as never, (progress) => void out.line({ progress }));
        await out.line({ result });
      } catch (err) {
        out.fail(err);
      } finally {
        out.end();
      }
    });
  }
};
