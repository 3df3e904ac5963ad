// Every error class of the SDK, from lib/errors.ts: each is a class usable as
// a type annotation (the return types below; `npm run typecheck` covers
// test/), with its `code`, its own brand, its `result` for the per-result
// subclasses, and `instanceof` across two copies of the module.
import t from 'tap';
import { Op, Result, resultMessage, resultName } from '../../protocol/constants.js';
import * as errors from '../../lib/errors.js';
import { NoVdiError, PartialWriteError, SheepdogResponseError, responseError } from '../../lib/errors.js';

type Errors = typeof errors;
/** The names of every error class lib/errors.ts exports. */
type ClassName = {
  [K in keyof Errors]: Errors[K] extends abstract new (...a: never[]) => errors.SheepdogError ? K : never;
}[keyof Errors];

interface Case {
  make: (m: Errors) => errors.SheepdogError;
  code: string;
  /** The class it extends (besides SheepdogError, which every one does). */
  parent?: ClassName;
  /** SD_RES number, for the SheepdogResponseError subclasses. */
  result?: number;
}

const resp = (result: number) =>
  ({ code: `SHEEPDOG_ERR_${resultName(result)}`, parent: 'SheepdogResponseError', result }) as const;

// The return type annotations only compile if each name is a type.
const cases = {
  SheepdogError: { make: (m): errors.SheepdogError => new m.SheepdogError('x'), code: 'SHEEPDOG_ERR' },
  ProtocolError: { make: (m): errors.ProtocolError => new m.ProtocolError('x'), code: 'SHEEPDOG_ERR_PROTOCOL' },
  InvalidArgumentError: {
    make: (m): errors.InvalidArgumentError => new m.InvalidArgumentError('x'),
    code: 'SHEEPDOG_ERR_INVALID_ARGUMENT',
  },
  ConnectionError: {
    make: (m): errors.ConnectionError => new m.ConnectionError('x', 'n:1'),
    code: 'SHEEPDOG_ERR_CONNECTION',
  },
  SheepProtocolError: {
    make: (m): errors.SheepProtocolError => new m.SheepProtocolError('x', 'n:1', 'unknown-id'),
    code: 'SHEEPDOG_ERR_PROTOCOL',
    parent: 'ProtocolError',
  },
  TimeoutError: { make: (m): errors.TimeoutError => new m.TimeoutError(), code: 'SHEEPDOG_ERR_TIMEOUT' },
  AbortError: { make: (m): errors.AbortError => new m.AbortError(), code: 'SHEEPDOG_ERR_ABORTED' },
  QueueFullError: { make: (m): errors.QueueFullError => new m.QueueFullError(), code: 'SHEEPDOG_ERR_QUEUE_FULL' },
  PoolClosedError: { make: (m): errors.PoolClosedError => new m.PoolClosedError(), code: 'SHEEPDOG_ERR_POOL_CLOSED' },
  OutcomeUnknownError: {
    make: (m): errors.OutcomeUnknownError => new m.OutcomeUnknownError('x', Op.NEW_VDI),
    code: 'SHEEPDOG_ERR_OUTCOME_UNKNOWN',
  },
  SheepdogResponseError: {
    make: (m): errors.SheepdogResponseError => new m.SheepdogResponseError(Result.UNKNOWN, 'ctx', 'n:1'),
    code: 'SHEEPDOG_ERR_UNKNOWN',
  },
  NoVdiError: { make: (m): errors.NoVdiError => new m.NoVdiError('ctx', 'n:1'), ...resp(Result.NO_VDI) },
  VdiExistsError: { make: (m): errors.VdiExistsError => new m.VdiExistsError('ctx', 'n:1'), ...resp(Result.VDI_EXIST) },
  VdiLockedError: {
    make: (m): errors.VdiLockedError => new m.VdiLockedError('ctx', 'n:1'),
    ...resp(Result.VDI_LOCKED),
  },
  NoTagError: { make: (m): errors.NoTagError => new m.NoTagError('ctx', 'n:1'), ...resp(Result.NO_TAG) },
  ReadOnlyError: { make: (m): errors.ReadOnlyError => new m.ReadOnlyError('ctx', 'n:1'), ...resp(Result.READONLY) },
  NoSpaceError: { make: (m): errors.NoSpaceError => new m.NoSpaceError('ctx', 'n:1'), ...resp(Result.NO_SPACE) },
  InvalidParmsError: {
    make: (m): errors.InvalidParmsError => new m.InvalidParmsError('ctx', 'n:1'),
    ...resp(Result.INVALID_PARMS),
  },
  NoObjError: { make: (m): errors.NoObjError => new m.NoObjError('ctx', 'n:1'), ...resp(Result.NO_OBJ) },
  WaitForFormatError: {
    make: (m): errors.WaitForFormatError => new m.WaitForFormatError('ctx', 'n:1'),
    ...resp(Result.WAIT_FOR_FORMAT),
  },
  VerMismatchError: {
    make: (m): errors.VerMismatchError => new m.VerMismatchError('ctx', 'n:1'),
    ...resp(Result.VER_MISMATCH),
  },
  VdiNotLockedError: {
    make: (m): errors.VdiNotLockedError => new m.VdiNotLockedError('ctx', 'n:1'),
    ...resp(Result.VDI_NOT_LOCKED),
  },
  NoBaseVdiError: {
    make: (m): errors.NoBaseVdiError => new m.NoBaseVdiError('ctx', 'n:1'),
    ...resp(Result.NO_BASE_VDI),
  },
  FullVdiError: { make: (m): errors.FullVdiError => new m.FullVdiError('ctx', 'n:1'), ...resp(Result.FULL_VDI) },
  EioError: { make: (m): errors.EioError => new m.EioError('ctx', 'n:1'), ...resp(Result.EIO) },
  HaltError: { make: (m): errors.HaltError => new m.HaltError('ctx', 'n:1'), ...resp(Result.HALT) },
  ShutdownError: { make: (m): errors.ShutdownError => new m.ShutdownError('ctx', 'n:1'), ...resp(Result.SHUTDOWN) },
  WaitForJoinError: {
    make: (m): errors.WaitForJoinError => new m.WaitForJoinError('ctx', 'n:1'),
    ...resp(Result.WAIT_FOR_JOIN),
  },
  NoSupportError: {
    make: (m): errors.NoSupportError => new m.NoSupportError('ctx', 'n:1'),
    ...resp(Result.NO_SUPPORT),
  },
  BufferSmallError: {
    make: (m): errors.BufferSmallError => new m.BufferSmallError('ctx', 'n:1'),
    ...resp(Result.BUFFER_SMALL),
  },
  InodeInvalidatedError: {
    make: (m): errors.InodeInvalidatedError => new m.InodeInvalidatedError('ctx', 'n:1'),
    ...resp(Result.INODE_INVALIDATED),
  },
  PartialWriteError: {
    make: (m): errors.PartialWriteError => new m.PartialWriteError([{ offset: 0, length: 1 }], new Error('x')),
    code: 'SHEEPDOG_ERR_PARTIAL_WRITE',
  },
  ClusterNotReadyError: {
    make: (m): errors.ClusterNotReadyError => new m.ClusterNotReadyError('x', 'unformatted', 'waiting-for-format'),
    code: 'SHEEPDOG_ERR_CLUSTER_NOT_READY',
  },
  ImageTooLargeError: {
    make: (m): errors.ImageTooLargeError => new m.ImageTooLargeError('x', 4096),
    code: 'SHEEPDOG_ERR_INVALID_ARGUMENT',
    parent: 'InvalidArgumentError',
  },
  VdiInUseError: {
    make: (m): errors.VdiInUseError => new m.VdiInUseError('x', 'vol', 'open'),
    code: 'SHEEPDOG_ERR_VDI_IN_USE',
  },
} satisfies Record<ClassName, Case>;

const names = Object.keys(cases) as ClassName[];
const caseOf = (n: ClassName): Case => cases[n];

t.test('the table names every error class the module exports', async (t) => {
  const exported = Object.entries(errors)
    .filter(([, v]) => typeof v === 'function' && Object.hasOwn(v, 'brand'))
    .map(([k]) => k)
    .sort();
  t.same(exported, [...names].sort());
});

t.test('each class: name, own brand, code, parent, result', async (t) => {
  for (const n of names) {
    const { make, code, parent, result } = caseOf(n);
    const C = errors[n];
    const e = make(errors);
    t.equal(C.name, n, `${n}: class name`);
    t.ok(Object.hasOwn(C, 'brand') && C.brand === n, `${n}: own brand`);
    t.equal(e.name, n, `${n}: error name`);
    t.equal(e.code, code, `${n}: code`);
    t.ok(e instanceof C, `${n}: instanceof its class`);
    t.ok(e instanceof errors.SheepdogError, `${n}: instanceof SheepdogError`);
    t.ok(e instanceof Error, `${n}: instanceof Error`);
    if (parent !== undefined) t.ok(e instanceof errors[parent], `${n}: instanceof ${parent}`);
    if (result !== undefined) {
      t.ok(e instanceof SheepdogResponseError);
      t.match(e, { result, resultName: resultName(result), node: 'n:1' }, `${n}: result`);
      t.equal(e.message, `ctx: ${resultMessage(result)} (${resultName(result)})`, `${n}: message`);
      const r = responseError(result, 'ctx', 'n:1');
      t.ok(r instanceof C && r.constructor === C, `responseError(${resultName(result)}) is a ${n}`);
      for (const o of names) {
        const other = caseOf(o);
        if (o !== n && other.result !== undefined) t.notOk(e instanceof errors[o], `${n} is not a ${o}`);
      }
    }
  }
  const plain = responseError(Result.UNKNOWN);
  t.equal(plain.constructor, SheepdogResponseError, 'results without a subclass get the base class');
});

t.test('instanceof, code and brand hold across two copies of the module', async (t) => {
  const spec = '../../lib/errors.js?errors-test-copy';
  const other = (await import(spec)) as Errors;
  t.not(other.NoVdiError, errors.NoVdiError, 'really a second copy');
  for (const n of names) {
    const { make, code, parent } = caseOf(n);
    const e = make(other);
    t.ok(e instanceof errors[n], `${n} from the copy is a ${n}`);
    t.ok(e instanceof errors.SheepdogError, `${n} from the copy is a SheepdogError`);
    if (parent !== undefined) t.ok(e instanceof errors[parent], `${n} from the copy is a ${parent}`);
    t.equal(e.code, code);
    t.equal(other[n].brand, errors[n].brand);
  }
  t.notOk(new other.TimeoutError() instanceof errors.AbortError);
  t.notOk(other.responseError(Result.NO_VDI) instanceof errors.VdiExistsError);
});

t.test('an error class as a parameter type', async (t) => {
  const describe = (e: NoVdiError): string => `${e.resultName} ${e.result} ${e.node ?? '-'}`;
  const ranges = (e: PartialWriteError): number => e.ranges.length;
  let seen = '';
  try {
    throw responseError(Result.NO_VDI, 'lookup', 'n:1');
  } catch (e) {
    if (e instanceof NoVdiError) seen = describe(e);
  }
  t.equal(seen, `NO_VDI ${Result.NO_VDI} n:1`);
  t.equal(ranges(new PartialWriteError([{ offset: 0, length: 1 }], new Error('x'))), 1);
});
