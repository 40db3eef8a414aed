// Builds policy.js into a component of world `cpm:iwf-policy/policy` (wit/policy.wit).
//
//   node build.mjs OUT.wasm
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath: resolve(here, 'policy.js'),
  witPath: resolve(here, '../../wit'),
  worldName: 'policy',
  disableFeatures: (process.env.DISABLE_FEATURES ?? 'http,fetch-event,random,clocks,stdio')
    .split(',')
    .filter(Boolean),
});
await mkdir(dirname(resolve(out)), { recursive: true });
await writeFile(resolve(out), component);
console.log(`${out}: ${component.length} bytes`);
