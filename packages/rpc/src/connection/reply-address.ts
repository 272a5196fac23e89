import { DIRECT_REPLY_TO } from '../protocol.ts';

/**
 * What the broker does with replies to an address, and so how (and whether) the server may
 * publish one there. RabbitMQ's direct reply-to addresses name the caller's channel by an
 * Erlang pid; some of them make the broker close the publisher's whole connection, which
 * would take every request in flight on it down with the culprit.
 */

export const DIRECT_REPLY_PREFIX = `${DIRECT_REPLY_TO}.`;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/**
 * Pids already found well formed. A server hears from the same few callers' channels over
 * and over, so the decode below runs once per caller, not once per request. Bounded.
 */
const wellFormedPids = new Set<string>();
const WELL_FORMED_PIDS_MAX = 1024;

/**
 * Why no reply may be published to `replyTo`, or null when it may. Plain queue names are
 * fine (at worst the reply is unroutable). A direct reply-to address is
 * `amq.rabbitmq.reply-to.<pid>.<key>`, <pid> being a base64 Erlang pid that the broker
 * decodes to find the caller's channel. RabbitMQ (3.10.8 and 4.0.5 both, measured) answers
 * a <pid> that does not decode by closing the publisher's whole connection (541
 * INTERNAL_ERROR), so such an address from a hostile or broken client would take the
 * server's connection, and every request in flight on it, down with it. Those requests
 * are dead-lettered.
 */
export function replyToProblem(replyTo: unknown): string | null {
  if (typeof replyTo !== 'string' || replyTo === '') return 'the request has no reply_to';
  if (Buffer.byteLength(replyTo) > 255) return 'reply_to is longer than 255 bytes';
  if (!replyTo.startsWith(DIRECT_REPLY_PREFIX)) return null;
  const rest = replyTo.slice(DIRECT_REPLY_PREFIX.length);
  const dot = rest.indexOf('.');
  const pid = dot > 0 && dot < rest.length - 1 ? rest.slice(0, dot) : '';
  if (wellFormedPids.has(pid)) return null;
  if (!BASE64.test(pid) || !isErlangPid(Buffer.from(pid, 'base64'))) {
    return 'reply_to is not a well-formed direct reply-to address';
  }
  if (wellFormedPids.size >= WELL_FORMED_PIDS_MAX) wellFormedPids.clear();
  wellFormedPids.add(pid);
  return null;
}

/**
 * Erlang external term format of a pid: 131, NEW_PID_EXT (88) or PID_EXT (103), the node
 * name as an atom, then ID and Serial (4 bytes each) and Creation (4 bytes, 1 for PID_EXT).
 */
function isErlangPid(term: Buffer): boolean {
  if (term.length < 4 || term[0] !== 131) return false;
  const tail = term[1] === 88 ? 12 : term[1] === 103 ? 9 : -1;
  if (tail < 0) return false;
  let length: number;
  let offset: number;
  if (term[2] === 100 || term[2] === 118) {
    // ATOM_EXT, ATOM_UTF8_EXT: two-byte length
    length = term.length >= 5 ? term.readUInt16BE(3) : 0;
    offset = 5;
  } else if (term[2] === 115 || term[2] === 119) {
    // SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT: one-byte length
    length = term[3] ?? 0;
    offset = 4;
  } else {
    return false;
  }
  return length > 0 && term.length === offset + length + tail;
}

/**
 * Whether a reply should be published `mandatory`. A reply to a queue that does not exist
 * comes back as a basic.return, so the server counts it instead of losing it silently. Not
 * over direct reply-to: RabbitMQ (3.10.8 and 4.0.5 measured) returns every mandatory reply
 * published there, delivered or not, so a return would say nothing and double the reply traffic.
 * Replies to a caller that has gone are dropped by the broker without a word.
 */
export function replyIsMandatory(replyTo: string): boolean {
  return !replyTo.startsWith(DIRECT_REPLY_PREFIX);
}

/**
 * Whether the reply goes through the ReplyQuarantine: a redelivered request over direct
 * reply-to, whose last delivery may have ended with the broker closing our connection over
 * its reply (see reply-quarantine.ts).
 */
export function replyNeedsQuarantine(replyTo: string, redelivered: boolean): boolean {
  return redelivered && replyTo.startsWith(DIRECT_REPLY_PREFIX);
}
