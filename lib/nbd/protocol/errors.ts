/** Typed errors of the NBD codec. */
import { SheepdogError } from '../../../protocol/errors.js';

export type NbdProtocolErrorReason =
  'bad-magic' | 'bad-client-flags' | 'payload-too-large' | 'option-too-large' | 'malformed-option';

/**
 * The peer broke the NBD framing (bad magic, an unknown client flag, a
 * payload too large to skip). The stream cannot be resynchronised: close it.
 */
export class NbdProtocolError extends SheepdogError {
  static override readonly brand: string = 'NbdProtocolError';
  readonly reason: NbdProtocolErrorReason;
  constructor(message: string, reason: NbdProtocolErrorReason) {
    super(message, 'SHEEPDOG_ERR_NBD_PROTOCOL');
    this.reason = reason;
  }
}

/**
 * An option request whose data does not parse (lengths that disagree, a name
 * over the limit). The stream stays in sync: answer NBD_REP_ERR_INVALID (or
 * `rep`) and go on.
 */
export class NbdOptionError extends SheepdogError {
  static override readonly brand: string = 'NbdOptionError';
  /** The option reply type to answer with. */
  readonly rep: number;
  constructor(message: string, rep: number) {
    super(message, 'SHEEPDOG_ERR_NBD_OPTION');
    this.rep = rep;
  }
}
