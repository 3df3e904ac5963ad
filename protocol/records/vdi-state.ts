/**
 * struct vdi_state: per-VDI copies, snapshot/deleted flags and lock state
 * (GET_VDI_COPIES replies).
 */
import { NODE_ID_SIZE, SD_MAX_COPIES, VDI_STATE_SIZE } from '../constants.js';
import { InvalidArgumentError } from '../errors.js';
import { need, u8, u32, w8, w32 } from '../bytes.js';
import { decodeNodeId, encodeNodeId, type NodeId } from './node.js';

export interface VdiState {
  vid: number;
  nrCopies: number;
  snapshot: number;
  deleted: number;
  copyPolicy: number;
  blockSizeShift: number;
  parentVid: number;
  /** LockState: 1 unlocked, 2 locked, 3 shared. */
  lockState: number;
  lockOwner: NodeId;
  nrParticipants: number;
  participantsState: number[];
  participants: NodeId[];
}

export function decodeVdiState(b: Uint8Array, off = 0): VdiState {
  need(b, off, VDI_STATE_SIZE, 'vdi_state');
  const nrParticipants = u32(b, off + 60);
  const n = Math.min(nrParticipants, SD_MAX_COPIES);
  const participantsState: number[] = [];
  const participants: NodeId[] = [];
  for (let i = 0; i < n; i++) {
    participantsState.push(u32(b, off + 64 + 4 * i));
    participants.push(decodeNodeId(b, off + 188 + NODE_ID_SIZE * i));
  }
  return {
    vid: u32(b, off),
    nrCopies: u8(b, off + 4),
    snapshot: u8(b, off + 5),
    deleted: u8(b, off + 6),
    copyPolicy: u8(b, off + 7),
    blockSizeShift: u8(b, off + 8),
    parentVid: u32(b, off + 12),
    lockState: u32(b, off + 16),
    lockOwner: decodeNodeId(b, off + 20),
    nrParticipants,
    participantsState,
    participants,
  };
}

export function encodeVdiState(s: VdiState, out: Uint8Array, off = 0): void {
  need(out, off, VDI_STATE_SIZE, 'vdi_state');
  if (s.participants.length > SD_MAX_COPIES) throw new InvalidArgumentError('too many participants');
  out.fill(0, off, off + VDI_STATE_SIZE);
  w32(out, off, s.vid);
  w8(out, off + 4, s.nrCopies);
  w8(out, off + 5, s.snapshot);
  w8(out, off + 6, s.deleted);
  w8(out, off + 7, s.copyPolicy);
  w8(out, off + 8, s.blockSizeShift);
  w32(out, off + 12, s.parentVid);
  w32(out, off + 16, s.lockState);
  encodeNodeId(s.lockOwner, out, off + 20);
  w32(out, off + 60, s.nrParticipants);
  s.participantsState.forEach((v, i) => w32(out, off + 64 + 4 * i, v));
  s.participants.forEach((p, i) => encodeNodeId(p, out, off + 188 + NODE_ID_SIZE * i));
}

/** Decode a GET_VDI_COPIES reply body (whole vdi_state records). */
export function decodeVdiStates(body: Uint8Array): VdiState[] {
  const out: VdiState[] = [];
  for (let o = 0; o + VDI_STATE_SIZE <= body.length; o += VDI_STATE_SIZE) out.push(decodeVdiState(body, o));
  return out;
}
