import AjvCompiler from '@fastify/ajv-compiler';

const ajvFactory = AjvCompiler();

/**
 * Two validators: path and query parameters arrive as text, so they are coerced to the declared types
 * (`?limit=5`). A JSON body is already typed: coercing it would let `"displayName": 12345` or
 * `"region": ["eu-de"]` through as strings, so a body must match the declared types exactly.
 */
export const buildValidator: AjvCompiler.ValidatorFactory = (externalSchemas, serverOptions) => {
  const options = serverOptions ?? {};
  const coercing = ajvFactory(externalSchemas, options);
  const exact = ajvFactory(externalSchemas, {
    ...options,
    customOptions: { ...options.customOptions, coerceTypes: false },
  } as typeof options);
  return (route) => (route.httpPart === 'body' ? exact : coercing)(route);
};
