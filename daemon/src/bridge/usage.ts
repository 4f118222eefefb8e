/** Tokens of one answer of the Messages API, as its `usage` reports them. */
export interface Tokens {
  input: number;
  output: number;
  cacheRead: number;
  cacheCreation: number;
}

export const noTokens = (): Tokens => ({ input: 0, output: 0, cacheRead: 0, cacheCreation: 0 });

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined);

/** Fields of a `usage` object that are present overwrite (the API's counts are cumulative). */
function merge(into: Tokens, usage: unknown): void {
  if (!usage || typeof usage !== 'object') return;
  const u = usage as Record<string, unknown>;
  into.input = num(u.input_tokens) ?? into.input;
  into.output = num(u.output_tokens) ?? into.output;
  into.cacheRead = num(u.cache_read_input_tokens) ?? into.cacheRead;
  into.cacheCreation = num(u.cache_creation_input_tokens) ?? into.cacheCreation;
}

/** Most bytes of a JSON answer kept to read its usage; a larger answer is passed on but not counted. */
const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** Longest SSE line kept; longer lines (a huge delta) are skipped, they never carry usage. */
const MAX_LINE = 1024 * 1024;

/**
 * Reads the usage of an answer while it streams through, without holding it up: for
 * `text/event-stream`, `message_start` (input and cache counts) and `message_delta` (final output
 * count, and cumulative input counts where the API sends them); for JSON, the answer's `usage`.
 */
export class UsageMeter {
  readonly tokens = noTokens();
  model: string | null = null;
  private readonly sse: boolean;
  private pending = '';
  private skipping = false;
  private json: Buffer[] = [];
  private jsonBytes = 0;
  private readonly decoder = new TextDecoder();

  constructor(contentType: string | undefined) {
    this.sse = /text\/event-stream/i.test(contentType ?? '');
  }

  push(chunk: Buffer): void {
    if (!this.sse) {
      this.jsonBytes += chunk.length;
      if (this.jsonBytes <= MAX_JSON_BYTES) this.json.push(chunk);
      else this.json = [];
      return;
    }
    let text = this.pending + this.decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      this.line(line);
    }
    if (text.length > MAX_LINE) {
      this.skipping = true;
      text = '';
    }
    this.pending = text;
  }

  /** Call when the answer ended. */
  end(): Tokens {
    if (!this.sse && this.json.length && this.jsonBytes <= MAX_JSON_BYTES) {
      try {
        const body = JSON.parse(Buffer.concat(this.json).toString('utf8')) as { usage?: unknown; model?: unknown };
        merge(this.tokens, body.usage);
        if (typeof body.model === 'string') this.model = body.model;
      } catch {
        // not JSON (an error page): nothing to count
      }
      this.json = [];
    } else if (this.sse && this.pending && !this.skipping) {
      this.line(this.pending);
      this.pending = '';
    }
    return this.tokens;
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line.startsWith('data:')) return;
    let ev: { type?: unknown; message?: { usage?: unknown; model?: unknown }; usage?: unknown };
    try {
      ev = JSON.parse(line.slice(5));
    } catch {
      return;
    }
    if (ev.type === 'message_start' && ev.message) {
      merge(this.tokens, ev.message.usage);
      if (typeof ev.message.model === 'string') this.model = ev.message.model;
    } else if (ev.type === 'message_delta') merge(this.tokens, ev.usage);
  }
}

/** US dollars per million tokens: input, output (cache writes cost 1.25× input, cache reads 0.1×). */
const PRICES: [RegExp, number, number][] = [
  [/opus-4-0|opus-4-1|opus-4-20|3-opus/, 15, 75],
  [/opus/, 5, 25],
  [/sonnet/, 3, 15],
  [/3-5-haiku|haiku-3-5/, 0.8, 4],
  [/3-haiku/, 0.25, 1.25],
  [/haiku/, 1, 5],
];

/** Estimated cost in nano-dollars (1e-9 USD), from list prices; unknown models are priced as Sonnet. */
export function costNanos(model: string | null, t: Tokens): number {
  const [, input, output] = PRICES.find(([re]) => re.test(model ?? '')) ?? [null, 3, 15];
  // $/M tokens = 1000 nano-dollars per token.
  return Math.round(1000 * (t.input * input + t.output * output + t.cacheCreation * input * 1.25 + t.cacheRead * input * 0.1));
}
