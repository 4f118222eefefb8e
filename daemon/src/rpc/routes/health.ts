import type { FastifyPluginAsync } from 'fastify';
import type { Health } from '../../health/index.js';

/** GET /health: the named checks (200 when all pass, 503 otherwise); GET /health/live: the process answers. */
export const healthRoutes: FastifyPluginAsync<{ health: Health }> = async (app, { health }) => {
  app.get('/health', async (_req, reply) => {
    const report = await health.report();
    return reply.code(report.status === 'ok' ? 200 : 503).send(report);
  });
  app.get('/health/live', async () => ({ status: 'ok' }));
};
