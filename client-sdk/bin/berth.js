#!/usr/bin/env node
// Thin shim so the bin exists before the TypeScript build; the CLI lives in dist/cli/.
import { run } from '../dist/cli/index.js';

process.exitCode = await run(process.argv);
