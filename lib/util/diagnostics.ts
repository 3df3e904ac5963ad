/**
 * Observability through `node:diagnostics_channel` (undici / node-redis
 * style). Every publish is guarded by `hasSubscribers`, so with nobody
 * listening nothing is built. `NODE_DEBUG=sheepdog` subscribes a logger
 * (`util.debuglog('sheepdog')`) to every channel.
 *
 * Channels (names are public):
 *   sheepdog:request               TracingChannel (start/end/asyncStart/asyncEnd/error) per pool request
 *   sheepdog:connect               a connection is established
 *   sheepdog:connect:error         a connection attempt failed
 *   sheepdog:connection:closed     a connection closed (with the error, if any)
 *   sheepdog:connection:retired    a connection stopped taking requests (too many orphans)
 *   sheepdog:node:down             a node has no usable connection; retry scheduled or given up
 *   sheepdog:node:up               a node has a usable connection again
 *   sheepdog:nodes:changed         discovery changed the node list
 *   sheepdog:request:retry         a request is sent again (failover, transient result, never sent)
 *   sheepdog:reply:late            a reply to a timed-out / aborted request arrived and was dropped
 *   sheepdog:protocol:error        a connection was destroyed for a protocol violation
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { debuglog } from 'node:util';
import type { Request } from '../../protocol/header.js';
import type { Reply } from '../transport/types.js';

/** Context object of the `sheepdog:request` tracing channel. */
export interface RequestTraceContext {
  request: Request;
  /** Opcode name, e.g. `READ_OBJ`. */
  op: string;
  /** Node that answered (or was last tried), set when the request settles. */
  node?: string | undefined;
  /** Sends of this request (1 + retries), set when it settles. */
  attempts?: number;
  /** Set by the tracing channel: the reply, or the error. */
  result?: Reply;
  error?: unknown;
}

export interface ConnectMessage {
  node: string;
  connection: number;
  localAddress?: string | undefined;
  localPort?: number | undefined;
}
export interface ConnectErrorMessage {
  node: string;
  connection: number;
  error: Error;
}
export interface ConnectionClosedMessage {
  node: string;
  connection: number;
  error: Error | undefined;
  /** Requests that were in flight on it and failed. */
  failed: number;
}
export interface ConnectionRetiredMessage {
  node: string;
  connection: number;
  orphans: number;
}
export interface NodeDownMessage {
  node: string;
  error: Error;
  /** Consecutive failed attempts so far. */
  retries: number;
  /** Delay before the next attempt, or false when the pool gave up on the node. */
  delay: number | false;
}
export interface NodeUpMessage {
  node: string;
}
export interface NodesChangedMessage {
  epoch: number;
  nodes: readonly string[];
  added: readonly string[];
  removed: readonly string[];
}
export interface RequestRetryMessage {
  request: Request;
  op: string;
  /** failover: connection died after send; unsent: it died before; transient: sheep answered a transient result. */
  reason: 'failover' | 'unsent' | 'transient';
  node: string | undefined;
  attempt: number;
  delay: number;
  error?: Error | undefined;
  result?: number | undefined;
}
export interface LateReplyMessage {
  node: string;
  connection: number;
  id: number;
  opcode: number;
}
export interface ProtocolErrorMessage {
  node: string;
  connection: number;
  error: Error;
}

export const requestChannel = diagnostics_channel.tracingChannel<RequestTraceContext, RequestTraceContext>(
  'sheepdog:request',
);
export const connectChannel = diagnostics_channel.channel('sheepdog:connect');
export const connectErrorChannel = diagnostics_channel.channel('sheepdog:connect:error');
export const connectionClosedChannel = diagnostics_channel.channel('sheepdog:connection:closed');
export const connectionRetiredChannel = diagnostics_channel.channel('sheepdog:connection:retired');
export const nodeDownChannel = diagnostics_channel.channel('sheepdog:node:down');
export const nodeUpChannel = diagnostics_channel.channel('sheepdog:node:up');
export const nodesChangedChannel = diagnostics_channel.channel('sheepdog:nodes:changed');
export const requestRetryChannel = diagnostics_channel.channel('sheepdog:request:retry');
export const lateReplyChannel = diagnostics_channel.channel('sheepdog:reply:late');
export const protocolErrorChannel = diagnostics_channel.channel('sheepdog:protocol:error');
/** A VDI write redone after a result sheep gives while it recovers: `{ vdi, reason, attempt }`. */
export const vdiRetryChannel = diagnostics_channel.channel('sheepdog:vdi:retry');

// ------------------------------------------------------------ NODE_DEBUG=sheepdog

const debug = debuglog('sheepdog');

function msg(e: Error | undefined): string {
  return e === undefined ? '' : ` (${e.message})`;
}

if (debug.enabled) {
  connectChannel.subscribe((m) => {
    const c = m as ConnectMessage;
    debug('connected to %s (connection %d, local port %s)', c.node, c.connection, c.localPort);
  });
  connectErrorChannel.subscribe((m) => {
    const c = m as ConnectErrorMessage;
    debug('connect to %s failed%s', c.node, msg(c.error));
  });
  connectionClosedChannel.subscribe((m) => {
    const c = m as ConnectionClosedMessage;
    debug('connection %d to %s closed, %d requests failed%s', c.connection, c.node, c.failed, msg(c.error));
  });
  connectionRetiredChannel.subscribe((m) => {
    const c = m as ConnectionRetiredMessage;
    debug('connection %d to %s retired with %d orphaned requests', c.connection, c.node, c.orphans);
  });
  nodeDownChannel.subscribe((m) => {
    const c = m as NodeDownMessage;
    debug(
      'node %s down after %d attempts%s; %s',
      c.node,
      c.retries,
      msg(c.error),
      c.delay === false ? 'giving up' : `retry in ${c.delay} ms`,
    );
  });
  nodeUpChannel.subscribe((m) => debug('node %s up', (m as NodeUpMessage).node));
  nodesChangedChannel.subscribe((m) => {
    const c = m as NodesChangedMessage;
    debug('epoch %d: nodes %j (added %j, removed %j)', c.epoch, c.nodes, c.added, c.removed);
  });
  requestRetryChannel.subscribe((m) => {
    const c = m as RequestRetryMessage;
    debug('retry %s #%d (%s) after %d ms, last node %s%s', c.op, c.attempt, c.reason, c.delay, c.node, msg(c.error));
  });
  lateReplyChannel.subscribe((m) => {
    const c = m as LateReplyMessage;
    debug('dropped late reply id %d (opcode 0x%s) from %s', c.id, c.opcode.toString(16), c.node);
  });
  protocolErrorChannel.subscribe((m) => {
    const c = m as ProtocolErrorMessage;
    debug('protocol error from %s: %s', c.node, c.error.message);
  });
  const none = (): void => {};
  requestChannel.subscribe({
    start(ctx) {
      debug('request %s', ctx.op);
    },
    end: none,
    asyncStart: none,
    error: none,
    asyncEnd(ctx) {
      if (ctx.error !== undefined) {
        debug('request %s failed on %s: %s', ctx.op, ctx.node, (ctx.error as Error).message);
      } else {
        debug('request %s answered by %s, result 0x%s', ctx.op, ctx.node, ctx.result?.header.result.toString(16));
      }
    },
  });
}

// ------------------------------------------------------------ transient results in the retry log

/**
 * `sheepdog:request:retry` after a transient result (`reason: 'transient'`)
 * also names the result (`resultName`, e.g. `NODE_IN_RECOVERY`), so the
 * reason for the retry reads without the code table.
 */
export interface RequestRetryMessage {
  resultName?: string | undefined;
}

if (debug.enabled) {
  requestRetryChannel.subscribe((m) => {
    const c = m as RequestRetryMessage;
    if (c.result === undefined) return;
    debug(
      'retry %s #%d: %s answered %s (0x%s)',
      c.op,
      c.attempt,
      c.node,
      c.resultName ?? 'result',
      c.result.toString(16),
    );
  });
}
