/** Where JSON.parse's message puts the error, when it says: "… in JSON at position 29". */
const statedPosition = (message: string): number | null => {
  const match = /at position (\d+)/.exec(message);
  return match ? Number(match[1]) : null;
};

/** True when `prefix` is, or begins, a JSON text: its only fault (if any) is that it ends too early. */
function isJsonPrefix(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return true;
  } catch (error) {
    const message = (error as Error).message;
    const at = statedPosition(message);
    return at === null ? /end of JSON input/.test(message) : at >= prefix.length;
  }
}

/**
 * Where a JSON syntax error is, as line and column (from 1), never what is there. V8's message quotes
 * the text around an unexpected token ("Unexpected token 'x', "{"secretKey": "…" is not valid JSON"),
 * and a configuration file holds the secret key. Messages that state a position are taken at their
 * word; for the others the error is where the longest prefix that still begins a JSON text ends.
 */
export function jsonSyntaxErrorAt(text: string, error: unknown): { line: number; column: number } {
  let offset = statedPosition((error as Error).message ?? '');
  if (offset === null) {
    let [good, bad] = [0, text.length + 1]; // the prefix of length `good` begins a JSON text; `bad` does not
    while (bad - good > 1) {
      const middle = Math.floor((good + bad) / 2);
      if (isJsonPrefix(text.slice(0, middle))) good = middle;
      else bad = middle;
    }
    offset = good;
  }
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}
