export { ConfigError, loadConfig, productionProblems } from './load.ts';
export { type Config, configSchema, envNames, rateLimitRouteClasses } from './schema.ts';
