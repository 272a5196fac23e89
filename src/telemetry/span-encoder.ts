/**
 * OTLP/protobuf encoding of finished spans, byte for byte what upstream's serialiser
 * (@opentelemetry/otlp-transformer's ProtobufTraceSerializer) writes, at a fraction of
 * its cost for an RPC service's spans. Upstream walks each batch twice (a size estimate,
 * then the write) and encodes every attribute key and value afresh, character by character;
 * here a batch is written once into a growing buffer, ids are written by Buffer's native hex
 * decoder, and the KeyValue of a repeated attribute (the instrumentation's six connection
 * attributes, the queue, the method: most of a span's bytes) is encoded once and copied
 * thereafter. Resources and instrumentation scopes are encoded once each.
 *
 * Nothing is dropped or shortened: the spans decode to the same message as upstream's.
 */
import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from '@opentelemetry/api';

/** The fields of a finished SDK span (ReadableSpan) that the encoding reads. */
export interface EncodableSpan {
  readonly name: string;
  readonly kind: number;
  spanContext(): SpanContext;
  readonly parentSpanContext?: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: { code: number; message?: string | undefined };
  readonly attributes: Attributes;
  readonly links: Link[];
  readonly events: {
    name: string;
    time: HrTime;
    attributes?: Attributes | undefined;
    droppedAttributesCount?: number;
  }[];
  readonly droppedAttributesCount: number;
  readonly droppedEventsCount: number;
  readonly droppedLinksCount: number;
  readonly resource: { attributes: Attributes; schemaUrl?: string | undefined };
  readonly instrumentationScope: {
    name: string;
    version?: string | undefined;
    schemaUrl?: string | undefined;
    attributes?: Attributes | undefined;
    droppedAttributesCount?: number | undefined;
  };
}

/** Distinct values remembered per attribute key; keys with more (ids, numbers) are encoded each time. */
const VALUES_PER_KEY = 64;
/** Longer strings are encoded each time: the cache stays small whatever the attributes hold. */
const CACHED_STRING_LENGTH = 256;
const TWO_32 = 4294967296;

class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(more: number): void {
    const needed = this.pos + more;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  varint(value: number): void {
    this.ensure(10);
    if (value >= 0 && value <= 0xffffffff) {
      let v = value >>> 0;
      while (v > 127) {
        this.buf[this.pos++] = (v & 127) | 128;
        v >>>= 7;
      }
      this.buf[this.pos++] = v;
      return;
    }
    let low: number;
    let high: number;
    if (value >= 0) {
      low = value >>> 0;
      high = (value / TWO_32) >>> 0;
    } else {
      const abs = Math.abs(value);
      low = ~(abs >>> 0) >>> 0;
      high = ~((abs / TWO_32) >>> 0) >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    while (high > 0 || low > 127) {
      this.buf[this.pos++] = (low & 127) | 128;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.buf[this.pos++] = low & 127;
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  /** A placeholder of one byte for a length, filled in by `finish`. */
  start(): number {
    this.ensure(1);
    return this.pos++;
  }

  finish(at: number): void {
    const length = this.pos - at - 1;
    if (length < 128) {
      this.buf[at] = length;
      return;
    }
    let size = 1;
    for (let v = length; v > 127; v >>>= 7) size++;
    this.ensure(size - 1);
    this.buf.copyWithin(at + size, at + 1, this.pos);
    this.pos += size - 1;
    let v = length;
    let i = at;
    while (v > 127) {
      this.buf[i++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buf[i] = v;
  }

  string(value: string): void {
    const length = value.length;
    let ascii = true;
    for (let i = 0; i < length; i++) {
      if (value.charCodeAt(i) > 127) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      this.varint(length);
      this.ensure(length);
      for (let i = 0; i < length; i++) this.buf[this.pos++] = value.charCodeAt(i);
      return;
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    this.varint(bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(value, this.pos, 'utf8');
  }

  bytes(value: Uint8Array): void {
    this.varint(value.length);
    this.raw(value);
  }

  raw(value: Uint8Array): void {
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  /** A hex id (trace or span id) as length-delimited bytes. */
  hexId(hex: string): void {
    const length = hex.length >>> 1;
    this.varint(length);
    this.ensure(length);
    this.pos += this.buf.write(hex, this.pos, length, 'hex');
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.#u32(value >>> 0);
  }

  #u32(v: number): void {
    const buf = this.buf;
    buf[this.pos++] = v & 255;
    buf[this.pos++] = (v >>> 8) & 255;
    buf[this.pos++] = (v >>> 16) & 255;
    buf[this.pos++] = (v >>> 24) & 255;
  }

  /** HrTime [seconds, nanoseconds] as fixed64 nanoseconds, without losing precision. */
  time(time: HrTime): void {
    const seconds = time[0];
    const nanos = time[1];
    const lower16 = (seconds & 65535) * 1e9;
    const upper = ((seconds / 65536) >>> 0) * 1e9;
    const low = (lower16 >>> 0) + (((upper & 65535) * 65536) >>> 0) + nanos;
    const high = (Math.floor(lower16 / TWO_32) + ((upper / 65536) >>> 0) + Math.floor(low / TWO_32)) >>> 0;
    this.ensure(8);
    this.#u32(low >>> 0);
    this.#u32(high);
  }

  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  take(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

function anyValue(w: Writer, value: unknown): void {
  switch (typeof value) {
    case 'string':
      w.tag(1, 2);
      w.string(value);
      return;
    case 'boolean':
      w.tag(2, 0);
      w.varint(value ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
        w.tag(3, 0);
        w.varint(value);
      } else {
        w.tag(4, 1);
        w.double(value);
      }
      return;
  }
  if (value instanceof Uint8Array) {
    w.tag(7, 2);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    w.tag(5, 2);
    const array = w.start();
    for (const item of value) {
      w.tag(1, 2);
      const at = w.start();
      anyValue(w, item);
      w.finish(at);
    }
    w.finish(array);
  } else if (typeof value === 'object' && value !== null) {
    w.tag(6, 2);
    const list = w.start();
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      w.tag(1, 2);
      const kv = w.start();
      keyValue(w, key, (value as Record<string, unknown>)[key]);
      w.finish(kv);
    }
    w.finish(list);
  }
}

function keyValue(w: Writer, key: string, value: unknown): void {
  w.tag(1, 2);
  w.string(key);
  w.tag(2, 2);
  const at = w.start();
  anyValue(w, value);
  w.finish(at);
}

function attributes(w: Writer, attrs: Attributes, field: number): void {
  for (const key in attrs) {
    if (!Object.hasOwn(attrs, key)) continue;
    w.tag(field, 2);
    const at = w.start();
    keyValue(w, key, attrs[key]);
    w.finish(at);
  }
}

function flags(context: SpanContext, isRemote: boolean | undefined): number {
  return (context.traceFlags & 255) | 256 | (isRemote ? 512 : 0);
}

export class SpanEncoder {
  /** Per attribute key: value -> the whole encoded attribute field (tag 9 included). */
  readonly #attributes = new Map<string, Map<AttributeValue, Uint8Array>>();
  readonly #resources = new WeakMap<object, Uint8Array>();
  readonly #scopes = new WeakMap<object, Uint8Array>();
  /** Reused across batches: the buffer only grows to the largest batch. */
  readonly #scratch = new Writer(64 * 1024);

  /** An ExportTraceServiceRequest holding `spans`, grouped by resource and scope. */
  encode(spans: readonly EncodableSpan[]): Uint8Array {
    const groups = new Map<EncodableSpan['resource'], Map<EncodableSpan['instrumentationScope'], EncodableSpan[]>>();
    for (const span of spans) {
      let scopes = groups.get(span.resource);
      if (scopes === undefined) {
        scopes = new Map();
        groups.set(span.resource, scopes);
      }
      const list = scopes.get(span.instrumentationScope);
      if (list === undefined) scopes.set(span.instrumentationScope, [span]);
      else list.push(span);
    }
    const w = this.#scratch;
    w.pos = 0;
    for (const [resource, scopes] of groups) {
      w.tag(1, 2);
      const resourceSpans = w.start();
      w.raw(this.#resource(resource));
      for (const [scope, list] of scopes) {
        w.tag(2, 2);
        const scopeSpans = w.start();
        w.raw(this.#scope(scope));
        for (const span of list) {
          w.tag(2, 2);
          const at = w.start();
          this.#span(w, span);
          w.finish(at);
        }
        if (scope.schemaUrl) {
          w.tag(3, 2);
          w.string(scope.schemaUrl);
        }
        w.finish(scopeSpans);
      }
      if (resource.schemaUrl) {
        w.tag(3, 2);
        w.string(resource.schemaUrl);
      }
      w.finish(resourceSpans);
    }
    // A copy: the request outlives this call (the transport may retry it).
    return Uint8Array.prototype.slice.call(w.take());
  }

  #resource(resource: EncodableSpan['resource']): Uint8Array {
    const known = this.#resources.get(resource);
    if (known !== undefined) return known;
    const w = new Writer(1024);
    w.tag(1, 2);
    const at = w.start();
    attributes(w, resource.attributes, 1);
    w.tag(2, 0);
    w.varint(0);
    w.finish(at);
    const encoded = Uint8Array.prototype.slice.call(w.take());
    // Resource attributes that a detector still resolves asynchronously may change: not cached.
    if (!(resource as { asyncAttributesPending?: boolean }).asyncAttributesPending) {
      this.#resources.set(resource, encoded);
    }
    return encoded;
  }

  #scope(scope: EncodableSpan['instrumentationScope']): Uint8Array {
    const known = this.#scopes.get(scope);
    if (known !== undefined) return known;
    const w = new Writer(256);
    w.tag(1, 2);
    const at = w.start();
    w.tag(1, 2);
    w.string(scope.name);
    if (scope.version) {
      w.tag(2, 2);
      w.string(scope.version);
    }
    if (scope.attributes) attributes(w, scope.attributes, 3);
    if (scope.droppedAttributesCount) {
      w.tag(4, 0);
      w.varint(scope.droppedAttributesCount);
    }
    w.finish(at);
    const encoded = Uint8Array.prototype.slice.call(w.take());
    this.#scopes.set(scope, encoded);
    return encoded;
  }

  /** A span's attribute, from the cache when its key and value were seen before. */
  #attribute(w: Writer, key: string, value: AttributeValue | undefined): void {
    const cacheable =
      typeof value === 'number' ||
      typeof value === 'boolean' ||
      (typeof value === 'string' && value.length <= CACHED_STRING_LENGTH);
    if (!cacheable) {
      w.tag(9, 2);
      const at = w.start();
      keyValue(w, key, value);
      w.finish(at);
      return;
    }
    let values = this.#attributes.get(key);
    if (values === undefined) {
      values = new Map();
      this.#attributes.set(key, values);
    }
    const known = values.get(value);
    if (known !== undefined) {
      w.raw(known);
      return;
    }
    const from = w.pos;
    w.tag(9, 2);
    const at = w.start();
    keyValue(w, key, value);
    w.finish(at);
    if (values.size < VALUES_PER_KEY) values.set(value, Uint8Array.prototype.slice.call(w.buf, from, w.pos));
  }

  #span(w: Writer, span: EncodableSpan): void {
    const context = span.spanContext();
    w.tag(1, 2);
    w.hexId(context.traceId);
    w.tag(2, 2);
    w.hexId(context.spanId);
    const traceState = context.traceState?.serialize();
    if (traceState) {
      w.tag(3, 2);
      w.string(traceState);
    }
    const parent = span.parentSpanContext;
    if (parent?.spanId) {
      w.tag(4, 2);
      w.hexId(parent.spanId);
    }
    w.tag(5, 2);
    w.string(span.name);
    const kind = span.kind == null ? 0 : span.kind + 1;
    if (kind !== 0) {
      w.tag(6, 0);
      w.varint(kind);
    }
    w.tag(7, 1);
    w.time(span.startTime);
    w.tag(8, 1);
    w.time(span.endTime);
    const attrs = span.attributes;
    for (const key in attrs) {
      if (Object.hasOwn(attrs, key)) this.#attribute(w, key, attrs[key]);
    }
    w.tag(10, 0);
    w.varint(span.droppedAttributesCount);
    for (const event of span.events) {
      w.tag(11, 2);
      const at = w.start();
      w.tag(1, 1);
      w.time(event.time);
      w.tag(2, 2);
      w.string(event.name);
      if (event.attributes) attributes(w, event.attributes, 3);
      w.tag(4, 0);
      w.varint(event.droppedAttributesCount || 0);
      w.finish(at);
    }
    w.tag(12, 0);
    w.varint(span.droppedEventsCount);
    for (const link of span.links) {
      w.tag(13, 2);
      const at = w.start();
      w.tag(1, 2);
      w.hexId(link.context.traceId);
      w.tag(2, 2);
      w.hexId(link.context.spanId);
      const linkState = link.context.traceState?.serialize();
      if (linkState) {
        w.tag(3, 2);
        w.string(linkState);
      }
      if (link.attributes) attributes(w, link.attributes, 4);
      w.tag(5, 0);
      w.varint(link.droppedAttributesCount || 0);
      w.tag(6, 5);
      w.fixed32(flags(link.context, link.context.isRemote));
      w.finish(at);
    }
    w.tag(14, 0);
    w.varint(span.droppedLinksCount);
    w.tag(15, 2);
    const status = w.start();
    if (span.status.message) {
      w.tag(2, 2);
      w.string(span.status.message);
    }
    w.tag(3, 0);
    w.varint(span.status.code);
    w.finish(status);
    w.tag(16, 5);
    w.fixed32(flags(context, parent?.isRemote));
  }
}
