#!/usr/bin/env node
// Build an orch plugin written in JavaScript into a WebAssembly component.
//
//   node build.mjs --entry DIR/index.js --sdk SDK_DIR --wit WIT_DIR --out DIR/NAME.wasm
//                  [--componentize PATH] [--esbuild PATH]
//
// 1. Bundles the entry module and everything it imports into one ES module with esbuild
//    (`orch-sdk` resolves to SDK_DIR/index.js; `orch:*` and `wasi:*` stay imports, for the
//    host).
// 2. Writes a copy of WIT_DIR whose `step` world imports only the host interfaces the bundle
//    uses (postgres, kafka, docker, wasi:http): the host reads what a plugin may reach from its
//    imports, so a plugin that never opens postgres must not import it.
// 3. Runs componentize-js on the bundle against that world (`step`), with StarlingMonkey's
//    fetch-event feature off, and its `http` feature (the `fetch` global) only when the bundle
//    uses wasi:http or calls `fetch(`.
//
// esbuild and @bytecodealliance/componentize-js are looked up in node_modules from the entry's
// directory upwards, unless --esbuild / --componentize name the package directory or a file in
// it (e.g. node_modules/.bin/componentize-js).
//
// On success: exit 0 and one line on stdout, "built OUT (N bytes) in S s". On failure: exit 1
// and "error: ..." on stderr. Needs Node 20+.

import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

class BuildError extends Error {}

function fail(message) {
  throw new BuildError(message);
}

/** The directory of package `name`: `given` (a directory or a file in it), or installed. */
function packageDir(name, given, from) {
  if (given) {
    let dir = realpathSync(resolve(given));
    if (!statSync(dir).isDirectory()) dir = dirname(dir);
    while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
    return dir;
  }
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', ...name.split('/'));
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) break;
  }
  return fail(`${name} is not installed: run \`npm install\` in ${from} (see its package.json)`);
}

/** Import package `name`'s ES entry point. */
async function importPackage(name, given, from) {
  const dir = packageDir(name, given, from);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const exp = typeof manifest.exports === 'object' ? manifest.exports['.'] ?? manifest.exports : manifest.exports;
  const pick = (e) => (typeof e === 'string' ? e : e && (pick(e.import) ?? pick(e.default)));
  const main = pick(exp) ?? manifest.module ?? manifest.main ?? 'index.js';
  return import(pathToFileURL(join(dir, main)).href);
}

/** Comment out the `step` world's imports of optional interfaces that `isUsed` rejects. */
async function trimWorld(witDir, isUsed) {
  for (const file of await readdir(witDir)) {
    if (!file.endsWith('.wit')) continue;
    const path = join(witDir, file);
    const source = await readFile(path, 'utf8');
    if (!/\bworld\s+step\s*\{/.test(source)) continue;
    const trimmed = source.replace(/^([ \t]*)import\s+([\w:./@-]+)\s*;/gm, (line, indent, iface) =>
      isUsed(iface) ? line : `${indent}// not used by this plugin: ${line.trim()}`,
    );
    await writeFile(path, trimmed);
  }
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      entry: { type: 'string' },
      sdk: { type: 'string' },
      wit: { type: 'string' },
      out: { type: 'string' },
      componentize: { type: 'string' },
      esbuild: { type: 'string' },
    },
  });
  for (const name of ['entry', 'sdk', 'wit', 'out']) {
    if (!args[name]) fail(`--${name} is required (usage at the top of build.mjs)`);
  }
  const entry = resolve(args.entry);
  const sdk = resolve(args.sdk);
  const wit = resolve(args.wit);
  const out = resolve(args.out);
  const from = dirname(entry);
  if (!existsSync(entry)) fail(`no entry module ${entry}`);
  if (!existsSync(join(sdk, 'index.js'))) fail(`no orch-sdk at ${sdk} (expected index.js)`);
  if (!existsSync(wit)) fail(`no WIT directory ${wit}`);

  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'orch-js-build-'));
  try {
    // 1. Bundle.
    const esbuild = await importPackage('esbuild', args.esbuild, from);
    const bundlePath = join(work, 'plugin.js');
    const hostImports = {
      name: 'orch-host-imports',
      setup(build) {
        // Left to the host, and dropped when nothing uses them.
        build.onResolve({ filter: /^(orch|wasi):/ }, (a) => ({ path: a.path, external: true, sideEffects: false }));
      },
    };
    let result;
    try {
      result = await (esbuild.build ?? esbuild.default.build)({
        entryPoints: [entry],
        bundle: true,
        format: 'esm',
        platform: 'neutral',
        mainFields: ['module', 'main'],
        target: 'es2022',
        keepNames: true,
        alias: { 'orch-sdk': join(sdk, 'index.js') },
        plugins: [hostImports],
        outfile: bundlePath,
        metafile: true,
        logLevel: 'silent',
      });
    } catch (e) {
      const where = (x) => (x.location ? `${x.location.file}:${x.location.line}: ` : '');
      fail(`bundling ${entry}:\n${(e.errors || []).map((x) => `  ${where(x)}${x.text}`).join('\n') || e.message}`);
    }
    const used = new Set();
    for (const output of Object.values(result.metafile.outputs)) {
      for (const i of output.imports) if (i.external) used.add(i.path);
    }
    const usesHttp = [...used].some((s) => s.startsWith('wasi:http/'));
    const usesFetch = /\bfetch\s*\(/.test(await readFile(bundlePath, 'utf8'));

    // 2. The world, with only the interfaces used.
    const witCopy = join(work, 'wit');
    await cp(wit, witCopy, { recursive: true });
    const optional = { postgres: 'orch:plugin/postgres', kafka: 'orch:plugin/kafka', docker: 'orch:plugin/docker' };
    await trimWorld(witCopy, (iface) => {
      if (iface.startsWith('wasi:http/')) return usesHttp || usesFetch;
      const spec = optional[iface];
      return !spec || [...used].some((s) => s === spec || s.startsWith(`${spec}@`));
    });

    // 3. Componentize.
    const { componentize } = await importPackage('@bytecodealliance/componentize-js', args.componentize, from);
    const disableFeatures = ['fetch-event'];
    if (!usesHttp && !usesFetch) disableFeatures.push('http');
    let built;
    try {
      built = await componentize({ sourcePath: bundlePath, witPath: witCopy, worldName: 'step', disableFeatures });
    } catch (e) {
      const message = String((e && e.message) || e);
      const hint = /during Wizer initialization/.test(message)
        ? '\nhint: the module\'s top-level code runs at build time and cannot call the host ' +
          '(Math.random, Date.now, crypto, log, http, postgres, ...): move that into step()'
        : '';
      fail(`componentize-js: ${message}${hint}`);
    }
    await writeFile(out, built.component);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(`built ${out} (${built.component.length} bytes) in ${seconds} s\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`error: ${e instanceof BuildError ? e.message : (e && e.stack) || e}\n`);
  process.exitCode = 1;
}
