import type { FastifyInstance } from 'fastify';
import { wireActionServices } from './app/action-services.ts';
import { createFastify } from './app/fastify.ts';
import { registerBackgroundJobs } from './app/jobs.ts';
import { registerRequestPipeline } from './app/pipeline.ts';
import { registerRoutes } from './app/routes.ts';
import { type AppDeps, defaultMailer, wireServices } from './app/services.ts';
import { registerShutdownHooks } from './app/shutdown.ts';
import { systemClock } from './platform/context.ts';
import { healthRoutes } from './platform/http/health.ts';

export { type AppDeps, argon2Options, type Services } from './app/services.ts';

/** Builds the whole Rampart app from one plugin per capability. Never listens: see server.ts. */
export async function buildApp({ clock = systemClock, mailer, ...given }: AppDeps): Promise<FastifyInstance> {
  const setup = { ...given, clock, mailer: mailer ?? defaultMailer(given.config, given.db) };
  const app = createFastify(setup.config, setup.logger);
  const core = wireServices(app, setup);
  const actions = wireActionServices(core);
  app.decorate('services', core.services);
  // Filled on first use by routeConfig() (platform/http/route-config.ts); decorated so every request has it.
  app.decorateRequest('matchedRouteConfig', null);
  // The API speaks JSON only: without this, Fastify parses text/plain and the client is told its body
  // "must be object" instead of that the content type is wrong.
  app.removeContentTypeParser('text/plain');
  registerShutdownHooks(app);
  const pipeline = await registerRequestPipeline(app, core);
  await app.register(healthRoutes, { db: setup.db });
  await registerBackgroundJobs(app, core, actions);
  await registerRoutes(app, core, actions, pipeline);
  return app;
}
