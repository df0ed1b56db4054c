import { type PGlite, parse, protocol, type Results } from '@electric-sql/pglite';

type BackendMessage = Parameters<typeof parse.parseResults>[0][number];

interface Prepared {
  name: string;
  /** Parameter type oids, as PostgreSQL inferred them when the statement was parsed. */
  types: number[];
}

/** Statement names are unique in the process, so two caches on one backend cannot collide. */
let counter = 0;

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};

/**
 * The app's statements as named prepared statements in PGlite's one backend. `PGlite.query` parses,
 * analyses and plans every statement again (and crosses into WebAssembly six times for it); a sign-in
 * runs the same few statements each time, so each distinct text is parsed once here and then only
 * bound and executed, in one protocol message. PostgreSQL keeps the plans valid itself: it re-plans a
 * statement when a table it uses changes, or when the role or row-security setting it was planned
 * under differs (plancache.c), so row-level security applies exactly as for an unprepared statement.
 * Parameters are serialised and results parsed by PGlite's own functions, as `query` does.
 * Callers hold the engine's lock: one statement at a time.
 */
export function createStatementCache(db: PGlite, maxStatements = 256) {
  const prepared = new Map<string, Prepared>();

  async function prepare(text: string): Promise<Prepared> {
    counter += 1;
    const name = `rampart_${counter}`;
    const parts: Uint8Array[] = [];
    // Least recently used goes first; a Map iterates in insertion order and hits are re-inserted.
    const oldest = prepared.size >= maxStatements ? prepared.entries().next().value : undefined;
    if (oldest) {
      prepared.delete(oldest[0]);
      parts.push(protocol.serialize.close({ type: 'S', name: oldest[1].name }));
    }
    parts.push(
      protocol.serialize.parse({ name, text }),
      protocol.serialize.describe({ type: 'S', name }),
      protocol.serialize.sync(),
    );
    const { messages } = await db.execProtocol(concat(parts));
    const statement = { name, types: parse.parseDescribeStatementResults(messages as BackendMessage[]) };
    prepared.set(text, statement);
    return statement;
  }

  function serialise(statement: Prepared, params: ReadonlyArray<unknown>): (string | null)[] {
    return params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const serializer = db.serializers[statement.types[i] as number];
      return serializer ? serializer(value) : String(value);
    });
  }

  return {
    async query(text: string, params: ReadonlyArray<unknown>): Promise<Results> {
      let statement = prepared.get(text);
      if (statement) {
        prepared.delete(text);
        prepared.set(text, statement);
      } else {
        statement = await prepare(text);
      }
      const message = concat([
        protocol.serialize.bind({ statement: statement.name, values: serialise(statement, params) }),
        protocol.serialize.describe({ type: 'P' }),
        protocol.serialize.execute({}),
        protocol.serialize.sync(),
      ]);
      const { messages } = await db.execProtocol(message);
      const [result] = parse.parseResults(messages as BackendMessage[], db.parsers);
      return result as Results;
    },

    /**
     * Text in the simple protocol as one message (transaction control, the tenant setting): what
     * `PGlite.exec` sends, without its second crossing for a Sync the simple protocol does not need.
     */
    async simple(text: string): Promise<void> {
      await db.execProtocol(protocol.serialize.query(text));
    },

    /** Drops every prepared statement (after the schema owner ran: tables may have changed shape). */
    async reset(): Promise<void> {
      prepared.clear();
      await db.exec('DEALLOCATE ALL');
    },
  };
}
