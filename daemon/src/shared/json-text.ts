/**
 * A value already written as JSON text, sent as is: a page of sessions that SQLite wrote row by row
 * (json_object), instead of reading every column into an object and stringifying it again.
 * `T` is the value the text holds, so handlers stay typed against the protocol.
 */
export class JsonText<T = unknown> {
  declare readonly value?: T;

  constructor(readonly text: string) {}

  /** Whoever serialises it the ordinary way (a log line, JSON.stringify in a test) gets the value. */
  toJSON(): T {
    return JSON.parse(this.text) as T;
  }
}

/**
 * JSON.stringify for a JSON-RPC response or batch whose `result` may be JsonText: that text goes
 * into the envelope untouched; everything else as JSON.stringify writes it.
 */
export function stringifyResponses(body: object | object[]): string {
  const one = (r: object): string => {
    const { result } = r as { result?: unknown };
    if (!(result instanceof JsonText)) return JSON.stringify(r);
    const { result: _, ...envelope } = r as Record<string, unknown>;
    const head = JSON.stringify(envelope);
    return `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"result":${result.text}}`;
  };
  return Array.isArray(body) ? `[${body.map(one).join(',')}]` : one(body);
}
