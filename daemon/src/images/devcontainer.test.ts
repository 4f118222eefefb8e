import { describe, expect, it } from 'vitest';
import { parseJsonc } from './devcontainer.js';

describe('parseJsonc', () => {
  it('reads devcontainer.json as VS Code does: comments and trailing commas', () => {
    const text = '// top\n{\n  /* block */ "image": "mcr.microsoft.com/devcontainers/base", // trailing\n  "args": { "URL": "http://x//y", },\n}\n';
    expect(parseJsonc(text)).toEqual({ image: 'mcr.microsoft.com/devcontainers/base', args: { URL: 'http://x//y' } });
  });

  it('refuses broken JSON, naming the problem and the line', () => {
    expect(() => parseJsonc('{\n  "image": "a"\n  "build": {}\n}')).toThrow(/CommaExpected at line 3/);
    expect(() => parseJsonc('{ "image": ')).toThrow(SyntaxError);
  });
});
