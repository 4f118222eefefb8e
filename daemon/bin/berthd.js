#!/usr/bin/env node
// Thin shim so the bin exists before the TypeScript build; the daemon lives in dist/.
import { runCli } from '../dist/boot.js';

await runCli(process.argv);
