#!/usr/bin/env node
// The module graph's two rules (README, "Architecture"): src/integrations imports nothing from
// src/modules, and no import cycle runs between feature folders (src/modules/<feature>,
// src/integrations/<system>). Specs are left out: a test may reach across. Exit 1 with the offending
// edges or cycles.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
const files = walk(root).filter((file) => file.endsWith('.ts') && !file.endsWith('.spec.ts'));
const edges = new Map();
const violations = [];

for (const file of files) {
  const from = folderOf(file);
  for (const target of importsOf(file)) {
    const to = folderOf(target);
    if (!from || !to || from === to) continue;
    if (from.startsWith('integrations/') && to.startsWith('modules/')) violations.push(`${relative(root, file)} imports ${relative(root, target)}`);
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, `${relative(root, file)} → ${relative(root, target)}`);
  }
}

const cycles = findCycles(edges);
for (const line of violations) console.error(`integrations → modules: ${line}`);
for (const cycle of cycles) console.error(`cycle: ${cycle.map((folder, index) => (index + 1 < cycle.length ? edges.get(folder).get(cycle[index + 1]) : folder)).join('\n       ')}`);
if (violations.length > 0 || cycles.length > 0) process.exit(1);
console.log(`module graph: ${files.length} files, ${edges.size} folders with imports, no cycle between feature folders, integrations import no feature`);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** src/modules/<feature> or src/integrations/<system>; undefined for the shared folders (common, config, database, testing). */
function folderOf(file) {
  const parts = relative(root, file).split('/');
  return (parts[0] === 'modules' || parts[0] === 'integrations') && parts.length > 2 ? `${parts[0]}/${parts[1]}` : undefined;
}

function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => {
    const base = resolve(dirname(file), match[1]);
    return [`${base}.ts`, join(base, 'index.ts')].find((candidate) => files.includes(candidate)) ?? base;
  });
}

function findCycles(graph) {
  const found = [];
  const state = new Map();
  const stack = [];
  const visit = (node) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node)?.keys() ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}
