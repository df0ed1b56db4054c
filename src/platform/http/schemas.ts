import { type TSchema, Type } from '@sinclair/typebox';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    instance: Type.Optional(Type.String()),
    requestId: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({ pointer: Type.String(), message: Type.String() }))),
    retryAfterSeconds: Type.Optional(Type.Integer()),
  },
  { $id: 'Problem', title: 'RFC 9457 problem details' },
);

const problemRef = Type.Ref('Problem');

/** Response map for a route: its success schemas plus the problem shape for every error status. */
export function responses<S extends Record<number, TSchema>>(success: S) {
  return { ...success, '4xx': problemRef, '5xx': problemRef } as S & { '4xx': TSchema; '5xx': TSchema };
}

/** Objects refuse unknown fields: a typo must be reported, never silently ignored. */
export const strictObject: typeof Type.Object = ((
  properties: Parameters<typeof Type.Object>[0],
  options = {},
) => Type.Object(properties, { additionalProperties: false, ...options })) as typeof Type.Object;

/**
 * Free text a person typed. PostgreSQL text cannot hold NUL (the insert fails, which would surface as a
 * 500), and a lone UTF-16 surrogate would be silently stored as U+FFFD: both are refused here, with the
 * other control characters. `multiline` lets tab and line breaks through.
 */
export function Text(
  options: {
    minLength?: number;
    maxLength?: number;
    multiline?: boolean;
    default?: string;
    description?: string;
  } = {},
) {
  const { multiline = false, ...limits } = options;
  const controls = multiline ? '\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f' : '\\u0000-\\u001f';
  return Type.String({ ...limits, pattern: `^[^${controls}\\u007f\\ud800-\\udfff]*$` });
}

/** A UUID as Rampart writes it: lower-case hex (the `uuid` format is this, see app/fastify.ts). */
export const canonicalUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const Uuid = Type.String({ format: 'uuid' });
/**
 * An RFC 3339 time. The `date-time` format admits a leap second (`23:59:60Z`) and an hours-only offset
 * (`+01`), neither of which JavaScript's Date reads (an invalid date, then a 500 where it is used): the
 * pattern refuses second 60 and asks for `Z`, `+hh:mm` or `+hhmm`.
 */
export const Timestamp = Type.String({
  format: 'date-time',
  pattern: ':[0-5][0-9](?:\\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})$',
});
