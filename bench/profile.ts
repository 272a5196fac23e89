/**
 * Summarises V8 CPU profiles (from `npm run bench -- --cpu-prof DIR`):
 *   node bench/profile.ts [--top N] FILE.cpuprofile...
 *   node bench/profile.ts --tracing [--calls N | --bench-json RUN.json] FILE.cpuprofile...
 * Self time by component (npm package, project file, Node internals, GC) and by function,
 * and inclusive time by component: how long some frame of that component was on the stack.
 * With --tracing: the busy time split into what tracing does (bench/lib/breakdown.ts), in
 * µs per call when the process's call count is given: --calls, or --bench-json with the
 * run's --json-file, where each profile's cell (from its file name) says how many calls it made.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { classify, type Frame, PARTS, type Part } from './lib/breakdown.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The component a frame belongs to: an npm package, a project folder, Node itself, or V8. */
export function component(url: string, name: string): string {
  if (url === '') {
    if (name === '(garbage collector)') return '(gc)';
    if (name === '(idle)' || name === '(program)' || name === '(root)') return name;
    return '(native)';
  }
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? url);
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const project = /\/(dist|src|bench)\/(.+?)(\.[jt]s)?$/.exec(url);
  if (project) return `${project[1]}/${project[2]}`;
  return url;
}

export function summarise(profile: Profile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const functions = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    if (node === undefined) return;
    const { url, functionName, lineNumber } = node.callFrame;
    const comp = component(url, functionName);
    if (comp === '(idle)') {
      idle += dt;
      return;
    }
    total += dt;
    self.set(comp, (self.get(comp) ?? 0) + dt);
    const fn = `${functionName || '(anonymous)'} ${comp}:${lineNumber + 1}`;
    functions.set(fn, (functions.get(fn) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame) seen.add(component(frame.url, frame.functionName));
    }
    for (const c of seen) inclusive.set(c, (inclusive.get(c) ?? 0) + dt);
  });
  const pct = (v: number) => `${((100 * v) / Math.max(total, 1)).toFixed(1).padStart(5)}%`;
  const ms = (v: number) => `${(v / 1000).toFixed(0).padStart(7)} ms`;
  const rank = (m: Map<string, number>, n: number) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  const lines = [`busy ${ms(total)}, idle ${ms(idle)}`, '', 'self time by component'];
  for (const [k, v] of rank(self, top)) lines.push(`  ${pct(v)} ${ms(v)}  ${k}`);
  lines.push('', 'inclusive time by component (some frame on the stack)');
  for (const [k, v] of rank(inclusive, top)) {
    if (k !== '(root)') lines.push(`  ${pct(v)} ${ms(v)}  ${k}`);
  }
  lines.push('', 'self time by function');
  for (const [k, v] of rank(functions, top)) lines.push(`  ${pct(v)} ${ms(v)}  ${k}`);
  return lines.join('\n');
}

/** Busy time (µs) per part of the traced path; start-up apart. */
export function tracingParts(profile: Profile): Map<Part, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const partOfNode = new Map<number, Part>();
  const parts = new Map<Part, number>();
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id)?.callFrame.functionName;
    if (leaf === '(idle)' || leaf === '(program)' || leaf === '(root)') return;
    let part = partOfNode.get(id);
    if (part === undefined) {
      const stack: Frame[] = [];
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)?.callFrame;
        if (frame) stack.push(frame);
      }
      part = classify(stack);
      partOfNode.set(id, part);
    }
    parts.set(part, (parts.get(part) ?? 0) + dt);
  });
  return parts;
}

export function formatParts(parts: Map<Part, number>, calls: number | undefined): string {
  const steady = PARTS.reduce((t, p) => t + (parts.get(p) ?? 0), 0);
  const lines = [
    `busy ${(steady / 1000).toFixed(0)} ms after start-up (start-up ${((parts.get('start-up') ?? 0) / 1000).toFixed(0)} ms)${calls ? `, ${calls} calls` : ''}`,
    `  ${'share'.padStart(6)} ${calls ? 'µs/call'.padStart(8) : ''}  part`,
  ];
  for (const p of PARTS) {
    const us = parts.get(p) ?? 0;
    const share = `${((100 * us) / Math.max(steady, 1)).toFixed(1)}%`.padStart(6);
    lines.push(`  ${share} ${calls ? (us / calls).toFixed(1).padStart(8) : ''}  ${p}`);
  }
  return lines.join('\n');
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    options: {
      top: { type: 'string', default: '25' },
      tracing: { type: 'boolean', default: false },
      calls: { type: 'string' },
      'bench-json': { type: 'string' },
    },
    allowPositionals: true,
  });
  const run = values['bench-json']
    ? (JSON.parse(readFileSync(values['bench-json'], 'utf8')) as {
        cells: { variant: string; config: string; round: number; result?: { started: number } }[];
      })
    : undefined;
  /** Calls begun by the process a profile is of: its cell is in the file name (bench/run.ts). */
  const callsOf = (file: string): number | undefined => {
    if (values.calls !== undefined) return Number(values.calls);
    const name = /([^/]+)-c([0-9x]+)-r(\d+)-(client|server)/.exec(file);
    if (run === undefined || name === null) return undefined;
    return run.cells.find((c) => c.variant === name[1] && c.config === name[2] && c.round === Number(name[3]))?.result
      ?.started;
  };
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const text = values.tracing
      ? formatParts(tracingParts(profile), callsOf(file))
      : summarise(profile, Number(values.top));
    process.stdout.write(`== ${file}\n${text}\n\n`);
  }
}
