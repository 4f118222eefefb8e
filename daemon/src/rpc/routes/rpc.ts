import type { FastifyPluginAsync } from 'fastify';
import { stringifyResponses } from '../../shared/json-text.js';
import type { RpcDispatcher } from '../dispatcher.js';

/** POST /rpc: JSON-RPC 2.0 (single or batch); the body reaches the dispatcher as text. */
export const rpcRoutes: FastifyPluginAsync<{ dispatcher: RpcDispatcher }> = async (app, { dispatcher }) => {
  app.post('/rpc', async (req, reply) => {
    const { body } = await dispatcher.handle(typeof req.body === 'string' ? req.body : '');
    if (body === null) return reply.code(204).send();
    return reply.header('content-type', 'application/json; charset=utf-8').send(stringifyResponses(body));
  });
};
