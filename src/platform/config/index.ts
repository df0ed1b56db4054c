export { ConfigError, loadConfig, productionProblems } from './load.ts';
export { argon2Limits, type Config, configSchema, envNames, rateLimitRouteClasses } from './schema.ts';
