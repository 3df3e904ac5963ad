/**
 * Public types of the embedded sheep (`startMemorySheep`): options, the
 * handle, and fault injection. Implemented in testing/embedded.ts.
 */

export interface MemorySheepOptions {
  /** Number of sheep nodes (listeners), default 3. */
  nodes?: number;
  /** First port: node i listens on `port + i`. Default 0 = an ephemeral port per node. */
  port?: number;
  /** Host to listen on, default '127.0.0.1'. */
  host?: string;
  /** Redundancy the cluster is formatted with (default 3, like `dog cluster format`). */
  copies?: number;
  /** EC policy byte, `((d/2)<<4)|p`, 0 = replication (default). */
  copyPolicy?: number;
  /** Format with VDI locking on (`dog cluster format -l`). Default false. */
  lock?: boolean;
  /** Default object size shift, default 22. */
  blockSizeShift?: number;
  /** Start unformatted (answers WAIT_FOR_FORMAT until MAKE_FS). Default false. */
  unformatted?: boolean;
  /** Persist cluster state and objects in this directory; without it, memory only. */
  dir?: string;
  /** Largest request/reply body accepted, default 64 MiB. */
  maxDataLength?: number;
  /** Total bytes of object data kept by the whole cluster (every replica counts) before NO_SPACE, default 4 GiB. */
  maxMemory?: number;
  /** Bytes each node reports as its store size (STAT_SHEEP), default `maxMemory / nodes`. */
  storeSize?: number;
  /** Deliberately answer requests out of order (for client tests). Default false. */
  reorder?: boolean;
  /** "null" mode for benchmarks: answer at once, store nothing (reads return zeros). */
  nullMode?: boolean;
}

/** Which requests a fault applies to. */
export interface FaultMatch {
  /** Only requests with this opcode (default: any). */
  opcode?: number;
  /** Only object requests (READ_OBJ, WRITE_OBJ, CREATE_AND_WRITE_OBJ…) of this object id (default: any). */
  oid?: bigint;
  /** Let this many matching requests through first (default 0). */
  after?: number;
  /** Apply to this many matching requests, then expire (default: unlimited). */
  times?: number;
}

export type Fault = FaultMatch &
  (
    | { kind: 'delay'; ms: number } // answer late
    | { kind: 'stall' } // never answer
    | { kind: 'drop' } // close the connection instead of answering
    | { kind: 'dropMidFrame' } // send part of the reply, then close
    | { kind: 'result'; result: number } // answer this result code instead
    | { kind: 'unknownId' } // answer with an id nobody sent
    | { kind: 'corruptHeader' } // answer with a garbage header
    | { kind: 'execute-drop-reply' } // apply the request, never answer
    | { kind: 'execute-late'; ms?: number; overtakenBy?: number } // apply (and answer) after later requests
    | { kind: 'drop-before-execute' } // never apply, never answer
    | { kind: 'close-mid-payload'; bytes?: number } // close while the request's payload arrives; never applied
  );

export interface FaultHandle {
  remove(): void;
}

/** What `MemorySheep.inject` returns: the handle, plus what the fault has done so far. */
export interface InjectedFault extends FaultHandle {
  /** Requests the fault has taken. */
  readonly hits: number;
  /** Of those, requests the sheep executed (applied to the cluster state). */
  readonly executed: number;
  /** Of those, requests whose reply frame (possibly an altered one) was written to the connection. */
  readonly replied: number;
  /** Resolves once the fault has taken `n` requests in all (default 1). */
  taken(n?: number): Promise<void>;
  /**
   * Resolves once every request taken so far is done with: executed or
   * discarded, answered or not (a stalled request is done when its
   * connection closes, a held one when it runs or its node stops).
   */
  settled(): Promise<void>;
}

export interface MemorySheep {
  /** `host:port` of each node, index = node number. */
  readonly addresses: readonly string[];
  /**
   * Node i leaves: its listener and connections close, its objects are out
   * of the ring (its store is kept, as a stopped sheep keeps its disk), the
   * epoch bumps and the other nodes recover the copies it held.
   */
  stopNode(i: number): Promise<void>;
  /** As `stopNode`, but the node dies: its connections are reset (TCP RST). */
  killNode(i: number): Promise<void>;
  /** Node i (re)joins on the same port: the epoch bumps and recovery brings it what it should hold. */
  startNode(i: number): Promise<void>;
  /** For tests: the whole object `oid` as node i's own store holds it (not pending recovery), or undefined. */
  readNodeObject(i: number, oid: bigint): Uint8Array | undefined;
  /** The nodes (indices) that hold `oid` now, copy 0 first: sheep 1.0's placement over the nodes that are up. */
  placement(oid: bigint): number[];
  /** True while some node is recovering (STAT_RECOVERY). */
  readonly recovering: boolean;
  /** Resolves once no node is recovering. */
  recovered(): Promise<void>;
  /** Install a fault on node i. */
  inject(i: number, fault: Fault): InjectedFault;
  /** Remove every fault (of node i, or of all nodes). */
  clearFaults(i?: number): void;
  /** Turn deliberate reply reordering on or off. */
  setReorder(on: boolean): void;
  /** Counters for tests: distinct objects on the nodes that are up, bytes stored by all nodes (every replica), requests served, open connections. */
  readonly stats: { objects: number; bytes: number; requests: number; connections: number };
  close(): Promise<void>;
}
