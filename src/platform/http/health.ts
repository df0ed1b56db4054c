import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Database } from '../db/index.ts';
import { platformError } from './errors.ts';
import { responses, strictObject } from './schemas.ts';

const Health = strictObject({ status: Type.Literal('ok') });
const Ready = strictObject({
  status: Type.Literal('ready'),
  engine: Type.String(),
});

export const healthRoutes: FastifyPluginAsyncTypebox<{ db: Database }> = async (app, { db }) => {
  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: { tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: Health } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the database answers and has every migration this build needs',
        response: responses({ 200: Ready }),
      },
    },
    async () => {
      try {
        const pending = await db.pendingMigrations();
        if (pending.length > 0) throw new Error('migrations pending');
      } catch {
        // The reason stays in the server log; the public answer says only what to do.
        throw platformError(
          'unavailable',
          'The database is unreachable or its schema is behind; see server logs.',
          {
            retryAfterSeconds: 5,
          },
        );
      }
      return { status: 'ready' as const, engine: db.engine.kind };
    },
  );
};
