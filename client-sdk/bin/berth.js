#!/usr/bin/env node
// Thin shim so the bin exists before the TypeScript build; the CLI lives in dist/cli/.
// commander and cli-progress are the CLI's own (optionalDependencies): the SDK never loads them.
let cli;
try {
  cli = await import('../dist/cli/index.js');
} catch (err) {
  const missing = err?.code === 'ERR_MODULE_NOT_FOUND' && /'(commander|cli-progress)'/.exec(String(err.message))?.[1];
  if (!missing) throw err;
  process.stderr.write(`berth: the CLI needs ${missing}, an optional dependency of @berth/client-sdk that was not installed (--omit=optional?): npm install commander cli-progress\n`);
  process.exit(1);
}
process.exitCode = await cli.run(process.argv);
