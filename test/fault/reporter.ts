/**
 * A node:test reporter for the fault suite: collects the figures the scenarios emit as
 * diagnostics ("figure {json}") and prints them as one table when the run ends. Used next
 * to the spec reporter (see the test:fault script); FAULT_REPORT_FILE=path also writes them
 * as JSON.
 */
import { writeFileSync } from 'node:fs';
import { FIGURE_PREFIX, type Figure } from './support.ts';

interface Event {
  type: string;
  data: {
    message?: string;
    name?: string;
    nesting?: number;
    details?: { duration_ms?: number; error?: unknown };
  };
}

/** What a failed test said, cut to what fits the tail of a CI log. */
function failure(name: string, error: unknown): string {
  // node:test wraps a test's own error in one that says where it failed; the cause says why.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  if (!(cause instanceof Error)) return `✖ ${name}\n    ${String(cause)}`;
  const where = (cause.stack ?? '').split('\n').filter((l) => /^\s+at .*file:/.test(l) && !l.includes('node_modules'));
  const lines = [
    ...`${cause.name}: ${cause.message}`.split('\n').slice(0, 24),
    ...where.slice(0, 2).map((l) => l.trim()),
  ];
  return [`✖ ${name}`, ...lines.map((l) => `    ${l}`)].join('\n');
}

export default async function* faultReport(source: AsyncIterable<Event>): AsyncGenerator<string> {
  const figures: Figure[] = [];
  const failed: string[] = [];
  const failures: string[] = [];
  const started = Date.now();
  for await (const event of source) {
    if (event.type === 'test:diagnostic' && event.data.message?.startsWith(FIGURE_PREFIX)) {
      try {
        figures.push(JSON.parse(event.data.message.slice(FIGURE_PREFIX.length)) as Figure);
      } catch {
        // not one of ours
      }
    } else if (event.type === 'test:fail' && event.data.name) {
      failed.push(event.data.name);
      // The suite's parent blocks fail with "1 subtest failed": only the test that threw says why.
      const error = event.data.details?.error as { failureType?: string } | undefined;
      if (error?.failureType !== 'subtestsFailed') failures.push(failure(event.data.name, error));
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  if (process.env.FAULT_REPORT_FILE) {
    writeFileSync(process.env.FAULT_REPORT_FILE, `${JSON.stringify({ seconds, failed, figures }, null, 2)}\n`);
  }
  if (figures.length === 0 && failures.length === 0) return;
  const rows = figures.map((f) => [f.scenario, f.name, String(f.value)]);
  const widths = [0, 1, 2].map((i) =>
    Math.max(...[['scenario', 'figure', 'value'], ...rows].map((r) => r[i]?.length ?? 0)),
  );
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const out = [
    '',
    `Fault suite figures (${seconds} s${failed.length ? `, ${failed.length} failed` : ''}):`,
    '',
    line(['scenario', 'figure', 'value']),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    // Last, so that a CI log's tail says which assertion failed and not only which scenario.
    ...(failures.length ? ['Failed:', ...failures, ''] : []),
  ];
  yield `${out.join('\n')}\n`;
}
