import { describe, expect, it } from 'vitest';
import { SHIPPED_IMAGES_DIR } from '../config/index.js';
import { buildOrder, parseDockerfile, readStacks, stackImageName, stackOfName, variantOfTag, type Stack } from './stacks.js';

const stack = (name: string, parent: string | null): Stack => ({ name, parent, dir: `/i/${name}`, dockerfile: `/i/${name}/Dockerfile`, stages: [], args: [] });

describe('stacks', () => {
  it('reads the parent from ARG BASE and the stage names', () => {
    expect(parseDockerfile('ARG BASE=claude-agent-base\nFROM ${BASE}\n')).toEqual({ parent: 'base', stages: [], args: ['BASE'] });
    expect(parseDockerfile('ARG BASE="claude-agent-node:dev"\nFROM ${BASE}\n').parent).toBe('node');
    expect(parseDockerfile('ARG BASE_IMAGE=node:20\nFROM ${BASE_IMAGE} AS prod\n  arg X\nFROM prod AS Dev\nARG X=1\n')).toEqual({
      parent: null,
      stages: ['prod', 'dev'],
      args: ['BASE_IMAGE', 'X'],
    });
    expect(parseDockerfile('ARG BASE=debian:bookworm\nFROM ${BASE}\n').parent).toBeNull();
  });

  it('orders parents first, pulls in what the wanted stacks extend, and refuses unknown names and cycles', () => {
    const all = [stack('base', null), stack('browser', 'node'), stack('node', 'base'), stack('python', 'base'), stack('solo', null)];
    expect(buildOrder(all).map((s) => s.name)).toEqual(['base', 'node', 'browser', 'python', 'solo']);
    expect(buildOrder(all, ['browser']).map((s) => s.name)).toEqual(['base', 'node', 'browser']);
    expect(buildOrder(all, ['python', 'node']).map((s) => s.name)).toEqual(['base', 'python', 'node']);
    expect(() => buildOrder(all, ['rust'])).toThrow(expect.objectContaining({ code: 'INVALID_PARAMS' }));
    expect(() => buildOrder([stack('a', 'b'), stack('b', 'a')])).toThrow(expect.objectContaining({ code: 'IMAGE_BUILD_FAILED' }));
    // A parent that does not ship is built elsewhere: no ordering constraint.
    expect(buildOrder([stack('x', 'elsewhere')]).map((s) => s.name)).toEqual(['x']);
  });

  it('names images by the claude-agent- convention and reads the variant from the tag', () => {
    expect(stackImageName('node', 'prod')).toBe('claude-agent-node:latest');
    expect(stackImageName('node', 'dev')).toBe('claude-agent-node:dev');
    expect(stackImageName('node', 'prod', 'ci')).toBe('claude-agent-node:ci');
    expect(stackImageName('node', 'dev', 'ci')).toBe('claude-agent-node:ci-dev');
    expect(variantOfTag('claude-agent-node:dev')).toBe('dev');
    expect(variantOfTag('claude-agent-node:ci-dev')).toBe('dev');
    expect(variantOfTag('claude-agent-node')).toBe('prod');
    expect(variantOfTag('registry:5000/claude-agent-node')).toBe('prod');
    const all = [stack('base', null), stack('node', 'base')];
    expect(stackOfName('claude-agent-node:dev', all)?.name).toBe('node');
    expect(stackOfName('claude-agent-base', all)?.name).toBe('base');
    expect(stackOfName('claude-agent-rust', all)).toBeNull();
    expect(stackOfName('my/claude-agent-node', all)).toBeNull();
  });

  it('finds the shipped stacks: base, and node, python, browser and flutter extending it', async () => {
    const shipped = await readStacks(SHIPPED_IMAGES_DIR);
    expect(Object.fromEntries(shipped.map((s) => [s.name, s.parent]))).toEqual({
      base: null,
      browser: 'base',
      flutter: 'base',
      node: 'base',
      python: 'base',
    });
    expect(shipped.find((s) => s.name === 'base')!.stages).toEqual(['prod', 'dev', 'final']);
    expect(buildOrder(shipped)[0]!.name).toBe('base');
    expect(await readStacks('/nonexistent/images')).toEqual([]);
  });
});
