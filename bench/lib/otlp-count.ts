/**
 * Counts the spans of OTLP trace exports (protobuf or JSON) per trace and per service, so
 * the benchmark can check that every call's spans arrived. Reads only the fields it needs
 * (resource's service.name, each span's trace_id) and skips the rest.
 */

/** Spans per trace id, and spans per service name. */
export interface SpanCount {
  perTrace: Map<string, number>;
  perService: Map<string, number>;
  spans: number;
}

export function emptyCount(): SpanCount {
  return { perTrace: new Map(), perService: new Map(), spans: 0 };
}

class Reader {
  readonly buf: Buffer;
  readonly end: number;
  pos: number;
  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buf[this.pos++];
      if (byte === undefined) throw new Error('truncated varint');
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  }

  /** The next field: its number, and for length-delimited fields a reader over it. */
  field(): { no: number; sub?: Reader } {
    const tag = this.varint();
    const no = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        this.varint();
        return { no };
      case 1:
        this.pos += 8;
        return { no };
      case 5:
        this.pos += 4;
        return { no };
      case 2: {
        const length = this.varint();
        const sub = new Reader(this.buf, this.pos, this.pos + length);
        this.pos += length;
        if (this.pos > this.end) throw new Error('truncated field');
        return { no, sub };
      }
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
  }

  string(): string {
    return this.buf.toString('utf8', this.pos, this.end);
  }
}

function serviceName(resource: Reader): string | undefined {
  while (!resource.done) {
    const kv = resource.field();
    if (kv.no !== 1 || kv.sub === undefined) continue;
    let key: string | undefined;
    let value: string | undefined;
    while (!kv.sub.done) {
      const f = kv.sub.field();
      if (f.no === 1 && f.sub) key = f.sub.string();
      else if (f.no === 2 && f.sub) {
        while (!f.sub.done) {
          const v = f.sub.field();
          if (v.no === 1 && v.sub) value = v.sub.string();
        }
      }
    }
    if (key === 'service.name') return value;
  }
  return undefined;
}

function add(count: SpanCount, service: string, traceId: string): void {
  count.spans++;
  count.perService.set(service, (count.perService.get(service) ?? 0) + 1);
  count.perTrace.set(traceId, (count.perTrace.get(traceId) ?? 0) + 1);
}

/** Adds the spans of one ExportTraceServiceRequest in protobuf to `count`. */
export function countProtobuf(body: Buffer, count: SpanCount): void {
  const request = new Reader(body);
  while (!request.done) {
    const rs = request.field();
    if (rs.no !== 1 || rs.sub === undefined) continue;
    let service = '?';
    const scopes: Reader[] = [];
    while (!rs.sub.done) {
      const f = rs.sub.field();
      if (f.no === 1 && f.sub) service = serviceName(f.sub) ?? '?';
      else if (f.no === 2 && f.sub) scopes.push(f.sub);
    }
    for (const scope of scopes) {
      while (!scope.done) {
        const f = scope.field();
        if (f.no !== 2 || f.sub === undefined) continue;
        let traceId = '';
        while (!f.sub.done) {
          const s = f.sub.field();
          if (s.no === 1 && s.sub) {
            traceId = s.sub.buf.toString('hex', s.sub.pos, s.sub.end);
            break;
          }
        }
        add(count, service, traceId);
      }
    }
  }
}

interface JsonRequest {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: { spans?: { traceId: string }[] }[];
  }[];
}

/** Adds the spans of one ExportTraceServiceRequest in OTLP/JSON to `count`. */
export function countJson(body: Buffer, count: SpanCount): void {
  const request = JSON.parse(body.toString('utf8')) as JsonRequest;
  for (const rs of request.resourceSpans ?? []) {
    const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '?';
    for (const scope of rs.scopeSpans ?? []) for (const span of scope.spans ?? []) add(count, service, span.traceId);
  }
}
