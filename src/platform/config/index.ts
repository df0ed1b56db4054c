export { ConfigError, loadConfig, productionProblems } from './load.ts';
export { type Config, configSchema, envNames } from './schema.ts';
