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
  data: { message?: string; name?: string; nesting?: number; details?: { duration_ms?: number } };
}

export default async function* faultReport(source: AsyncIterable<Event>): AsyncGenerator<string> {
  const figures: Figure[] = [];
  const failed: string[] = [];
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
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  if (process.env.FAULT_REPORT_FILE) {
    writeFileSync(process.env.FAULT_REPORT_FILE, `${JSON.stringify({ seconds, failed, figures }, null, 2)}\n`);
  }
  if (figures.length === 0) return;
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
  ];
  yield `${out.join('\n')}\n`;
}
