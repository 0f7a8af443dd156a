import type { Attributes, Link, SpanContext } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { RecordedSpan } from './span.js';
import { nanosFromOrigin, ORIGIN_NS_HIGH, ORIGIN_NS_LOW } from './span-time.js';

/**
 * OTLP protobuf for the spans gatehouse records: `ExportTraceServiceRequest` written straight into
 * one buffer per batch, the resource and scope encoded once per process. It writes the fields of
 * opentelemetry-proto's trace.proto that @opentelemetry/otlp-transformer's ProtobufTraceSerializer
 * writes, from gatehouse's compact span records instead of the SDK's ReadableSpan (no HrTime
 * pairs, no attribute copies, attribute keys encoded once). docs/performance.md says what it saves.
 *
 * Wire format: every field is a tag (field number << 3 | wire type) then a varint (type 0), 8
 * little-endian bytes (type 1) or a varint length and that many bytes (type 2). A nested message's
 * length is written before it is known: room for the expected varint is left, and the content is
 * moved when the length needs another size.
 */

const LEN = 2;
const VARINT = 0;
const I64 = 1;
const I32 = 5;
const tag = (field: number, type: number) => (field << 3) | type;
const TWO_32 = 0x1_0000_0000;

/** OTLP span flags: the W3C trace flags, plus "the parent's is_remote is known" and its value. */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.ensure(10);
    const buf = this.buf;
    if (v >= 0 && v <= 0xffffffff) {
      while (v > 0x7f) {
        buf[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      buf[this.pos++] = v;
      return;
    }
    // 64-bit: two's complement halves (a negative int64 is ten bytes)
    let low: number;
    let high: number;
    if (v >= 0) {
      low = v >>> 0;
      high = Math.floor(v / TWO_32) >>> 0;
    } else {
      const abs = -v;
      low = ~(abs >>> 0) >>> 0;
      high = ~(Math.floor(abs / TWO_32) >>> 0) >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    while (high > 0 || low > 0x7f) {
      buf[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    buf[this.pos++] = low;
  }

  /** A time in milliseconds from timeOrigin as fixed64 nanoseconds since the epoch. */
  time(ms: number): void {
    this.ensure(8);
    const sub = nanosFromOrigin(ms); // < 2^53 for ~104 days of uptime, exact
    let low = ORIGIN_NS_LOW + (sub % TWO_32);
    const high = ORIGIN_NS_HIGH + Math.floor(sub / TWO_32) + Math.floor(low / TWO_32);
    low = low % TWO_32;
    this.u32(low);
    this.u32(high >>> 0);
  }

  fixed32(v: number): void {
    this.ensure(4);
    this.u32(v >>> 0);
  }

  /** Four little-endian bytes, room ensured (Buffer's writeUInt32LE checks its arguments every call). */
  private u32(v: number): void {
    const buf = this.buf;
    const p = this.pos;
    buf[p] = v;
    buf[p + 1] = v >>> 8;
    buf[p + 2] = v >>> 16;
    buf[p + 3] = v >>> 24;
    this.pos = p + 4;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /**
   * A length-delimited string. Short ASCII strings (names, routes, paths, addresses: nearly every
   * attribute) are copied a character at a time, cheaper than a call into the UTF-8 encoder.
   */
  string(s: string): void {
    const len = s.length;
    if (len < 0x80) {
      this.ensure(1 + len * 3);
      if (this.ascii(s, this.pos + 1)) {
        this.buf[this.pos] = len;
        this.pos += 1 + len;
        return;
      }
    }
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos);
  }

  /** A span or trace id (lowercase hex) as bytes. */
  id(hex: string): void {
    const n = hex.length >> 1;
    this.ensure(1 + n);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = n;
    for (let i = 0; i < n; i++) buf[p++] = (HEX[hex.charCodeAt(2 * i) & 0x7f]! << 4) | HEX[hex.charCodeAt(2 * i + 1) & 0x7f]!;
    this.pos = p;
  }

  /** Copies `s` to `at` (room ensured) when it is ASCII, one byte per character; false at the first character that is not. */
  private ascii(s: string, at: number): boolean {
    const buf = this.buf;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      buf[at + i] = c;
    }
    return true;
  }

  /**
   * A KeyValue (field `fieldTag`) whose value is a short ASCII string, every length known up front:
   * written in one pass. False, with nothing written, when it is not one.
   */
  shortStringAttribute(fieldTag: number, key: Buffer, s: string): boolean {
    const kl = key.length;
    const l = s.length;
    const total = kl + l + 4; // key, then value: tag, length, AnyValue.string_value tag, length, bytes
    if (total >= 0x80) return false;
    this.ensure(2 + total);
    const at = this.pos + 2 + kl + 4;
    if (!this.ascii(s, at)) return false;
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = fieldTag;
    buf[p++] = total;
    for (let i = 0; i < kl; i++) buf[p++] = key[i]!;
    buf[p++] = KEYVALUE_VALUE;
    buf[p++] = l + 2;
    buf[p++] = ANYVALUE_STRING;
    buf[p] = l;
    this.pos = at + l;
    return true;
  }

  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    this.ensure(n);
    this.buf.set(bytes, this.pos);
    this.pos += n;
  }

  /** A field's tag (field numbers above 15 take two bytes). */
  tag(field: number, type: number): void {
    if (field < 16) {
      this.ensure(1);
      this.buf[this.pos++] = tag(field, type);
    } else this.varint(tag(field, type));
  }

  stringField(field: number, s: string): void {
    this.tag(field, LEN);
    this.string(s);
  }

  idField(field: number, hex: string): void {
    this.tag(field, LEN);
    this.id(hex);
  }

  /** A count field written as 0 (the dropped_*_count fields the transformer writes too). */
  zero(field: number): void {
    this.tag(field, VARINT);
    this.ensure(1);
    this.buf[this.pos++] = 0;
  }

  timeField(field: number, ms: number): void {
    this.tag(field, I64);
    this.time(ms);
  }

  /** Starts a nested message of field `field`: returns where its content starts, `reserve` bytes after. */
  begin(field: number, reserve: number): number {
    this.ensure(1 + reserve);
    this.buf[this.pos++] = tag(field, LEN);
    this.pos += reserve;
    return this.pos;
  }

  /** Ends the message begun at `start`: writes its length, moving the content if the varint is not `reserve` bytes. */
  end(start: number, reserve: number): void {
    const length = this.pos - start;
    const size = length < 0x80 ? 1 : length < 0x4000 ? 2 : length < 0x200000 ? 3 : length < 0x10000000 ? 4 : 5;
    if (size !== reserve) {
      this.ensure(size - reserve);
      this.buf.copyWithin(start + size - reserve, start, this.pos);
      this.pos += size - reserve;
      start += size - reserve;
    }
    let at = start - size;
    let v = length;
    while (v > 0x7f) {
      this.buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[at] = v;
  }
}

/** `KeyValue.key` of an attribute key (tag, length, UTF-8), encoded once per key. */
const keys = new Map<string, Buffer>();
const KEYVALUE_VALUE = tag(2, LEN);
const ANYVALUE_STRING = tag(1, LEN);
/** Hex digit values by character code (ids are lowercase hex; anything else reads as 0). */
const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = HEX[65 + i] = 10 + i;
function keyBytes(key: string): Buffer {
  let b = keys.get(key);
  if (b === undefined) {
    const w = new Writer(key.length * 3 + 8);
    w.buf[w.pos++] = tag(1, LEN);
    w.string(key);
    b = Buffer.from(w.buf.subarray(0, w.pos));
    if (keys.size < 4096) keys.set(key, b); // the keys gatehouse and its callers use; not unbounded
  }
  return b;
}

function anyValue(w: Writer, value: unknown): void {
  const type = typeof value;
  if (type === 'string') return w.stringField(1, value as string);
  if (type === 'boolean') {
    w.tag(2, VARINT);
    return w.varint(value ? 1 : 0);
  }
  if (type === 'number') {
    const n = value as number;
    if (Number.isInteger(n) && n >= -(2 ** 63) && n < 2 ** 63) {
      w.tag(3, VARINT);
      w.varint(n);
    } else {
      w.tag(4, I64);
      w.double(n);
    }
    return;
  }
  if (value instanceof Uint8Array) {
    w.tag(7, LEN);
    w.varint(value.length);
    w.raw(value);
  } else if (Array.isArray(value)) {
    const arr = w.begin(5, 1);
    for (const item of value) {
      const at = w.begin(1, 1);
      anyValue(w, item);
      w.end(at, 1);
    }
    w.end(arr, 1);
  } else if (typeof value === 'object' && value !== null) {
    const list = w.begin(6, 1);
    for (const [k, v] of Object.entries(value)) {
      const kv = w.begin(1, 1);
      keyValue(w, k, v);
      w.end(kv, 1);
    }
    w.end(list, 1);
  }
}

function keyValue(w: Writer, key: string, value: unknown): void {
  w.raw(keyBytes(key));
  const v = w.begin(2, 1);
  anyValue(w, value);
  w.end(v, 1);
}

/** Repeated KeyValue of field `field`; undefined and null values are not attributes. */
function attributes(w: Writer, field: number, attrs: Attributes | undefined): void {
  if (attrs === undefined) return;
  const fieldTag = tag(field, LEN);
  for (const key in attrs) {
    const value = attrs[key];
    if (value === undefined || value === null) continue;
    if (typeof value === 'string' && w.shortStringAttribute(fieldTag, keyBytes(key), value)) continue;
    const kv = w.begin(field, 1);
    keyValue(w, key, value);
    w.end(kv, 1);
  }
}

function link(w: Writer, l: Link): void {
  const at = w.begin(13, 1);
  w.idField(1, l.context.traceId);
  w.idField(2, l.context.spanId);
  const state = l.context.traceState?.serialize();
  if (state) w.stringField(3, state);
  attributes(w, 4, l.attributes);
  w.zero(5);
  w.tag(6, I32);
  w.fixed32(flags(l.context.traceFlags, l.context.isRemote));
  w.end(at, 1);
}

const flags = (traceFlags: number, isRemote: boolean | undefined) => (traceFlags & 0xff) | HAS_IS_REMOTE | (isRemote ? IS_REMOTE : 0);

function span(w: Writer, s: RecordedSpan): void {
  const ctx = s.spanContext();
  const parent: SpanContext | undefined = s.parentSpanContext;
  const at = w.begin(2, 2);
  w.idField(1, ctx.traceId);
  w.idField(2, ctx.spanId);
  const state = ctx.traceState?.serialize();
  if (state) w.stringField(3, state);
  if (parent !== undefined) w.idField(4, parent.spanId);
  w.stringField(5, s.name);
  w.tag(6, VARINT);
  w.varint(s.kind + 1); // OTLP's SpanKind counts from UNSPECIFIED = 0
  w.timeField(7, s.startMs);
  w.timeField(8, s.endMs);
  attributes(w, 9, s.ownAttributes);
  w.zero(10);
  for (const e of s.recordedEvents) {
    const ev = w.begin(11, 1);
    w.timeField(1, e.ms);
    w.stringField(2, e.name);
    attributes(w, 3, e.attributes);
    w.zero(4);
    w.end(ev, 1);
  }
  w.zero(12);
  for (const l of s.links) link(w, l);
  w.zero(14);
  const status = w.begin(15, 1);
  if (s.status.message) w.stringField(2, s.status.message);
  w.tag(3, VARINT);
  w.varint(s.status.code);
  w.end(status, 1);
  w.tag(16, I32);
  w.fixed32(flags(ctx.traceFlags, parent?.isRemote));
  w.end(at, 2);
}

/** `Resource` (field 1 of ResourceSpans) and `InstrumentationScope` (field 1 of ScopeSpans), encoded once. */
function header(resource: Resource, scope: { name: string; version?: string }): { resource: Buffer; scope: Buffer } {
  const r = new Writer(4096);
  const at = r.begin(1, 2);
  attributes(r, 1, resource.attributes);
  r.zero(2);
  r.end(at, 2);
  const s = new Writer(256);
  const sat = s.begin(1, 1);
  s.stringField(1, scope.name);
  if (scope.version) s.stringField(2, scope.version);
  s.end(sat, 1);
  return { resource: Buffer.from(r.buf.subarray(0, r.pos)), scope: Buffer.from(s.buf.subarray(0, s.pos)) };
}

/**
 * The serializer for the SDK's OTLP exporters (http/protobuf and grpc): one batch of spans of one
 * resource and scope as an `ExportTraceServiceRequest`. The response is decoded by the
 * transformer's own deserializer, as before.
 */
export function createTraceEncoder(resource: Resource, scope: { name: string; version?: string }) {
  let head: { resource: Buffer; scope: Buffer } | undefined;
  let w = new Writer(64 * 1024);
  return (spans: readonly RecordedSpan[]): Uint8Array => {
    head ??= header(resource, scope); // the batch processor has waited for the resource's async attributes
    w.pos = 0;
    const rs = w.begin(1, 3);
    w.raw(head.resource);
    const ss = w.begin(2, 3);
    w.raw(head.scope);
    for (const s of spans) {
      if (s.encoded !== undefined) w.raw(s.encoded);
      else span(w, s);
    }
    w.end(ss, 3);
    w.end(rs, 3);
    const out = Buffer.allocUnsafeSlow(w.pos); // a copy: the exporter may keep it to retry
    w.buf.copy(out, 0, 0, w.pos);
    if (w.buf.length > 1024 * 1024) w = new Writer(64 * 1024); // one huge batch does not pin its buffer
    return out;
  };
}

/** Spans are pre-encoded into slabs of this size; one slab is held until its last span is exported. */
const SLAB = 64 * 1024;

/**
 * Encodes each span as it ends (`RecordedSpan.encoded`, a view into a shared slab), so that a
 * batch's export copies bytes instead of encoding 512 spans in one turn of the event loop: that
 * turn took about 2 ms (up to 9 ms) and was every traced request's p99 at one connection.
 */
export function createSpanPreEncoder(): (span: RecordedSpan) => void {
  let w = new Writer(SLAB);
  return (s) => {
    if (w.buf.length - w.pos < 4096) w = new Writer(SLAB);
    const start = w.pos;
    span(w, s); // a span longer than what is left moves the slab's bytes to a larger one: views already taken keep the old
    s.encoded = w.buf.subarray(start, w.pos);
  };
}
