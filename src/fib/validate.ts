import { InvalidRequestError } from '@fib-rpc/rpc';

/**
 * The n of a fib request: a bare integer (30), a string of digits from the CLI, or
 * {"n": 30}. Anything else is an InvalidRequestError that says what was wrong.
 */
export function parseN(params: unknown, maxN: number): number {
  let value: unknown = params;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    if (!('n' in value)) throw new InvalidRequestError('params must be {"n": <integer>}');
    value = (value as { n: unknown }).n;
  }
  if (typeof value === 'string') {
    if (!/^\s*-?\d+\s*$/.test(value)) throw new InvalidRequestError(`n must be an integer, got ${quote(value)}`);
    value = Number(value);
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidRequestError(`n must be an integer, got ${describe(value)}`);
  }
  if (!Number.isInteger(value)) throw new InvalidRequestError(`n must be an integer, got ${value}`);
  if (value < 0) throw new InvalidRequestError(`n must not be negative, got ${value}`);
  if (value > maxN) throw new InvalidRequestError(`n must be at most ${maxN} (FIB_MAX_N), got ${value}`);
  return value;
}

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return quote(value);
  return typeof value === 'number' ? String(value) : `a ${typeof value}`;
}
