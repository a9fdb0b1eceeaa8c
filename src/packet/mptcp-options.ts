/**
 * Decoding of the MPTCP TCP option (kind 30) in place. Results go into one long-lived
 * MptcpInfo (reused for every packet); keys, tokens and nonces are not copied, only located by
 * their offset in the frame. Facts: docs/PROTOCOLS.md (RFC 8684 v1, RFC 6824 v0, Linux).
 *
 * The form of an MP_CAPABLE or MP_JOIN option follows from the TCP flags, as on a receiving
 * Linux host: SYN alone, SYN+ACK, or no SYN. Its length must then match that form exactly;
 * for MP_CAPABLE without SYN it must also match the presence of payload (20 bytes on a pure
 * ACK, 22/24 with data), which is Linux's "strict size checking". A mismatch is reported as a
 * malformed code, never thrown.
 *
 * Only the first MPTCP option of a packet is decoded: MP_CAPABLE and MP_JOIN are sent alone.
 */
import { FIND_MALFORMED, FIND_NOT_FOUND, TCPOPT_MPTCP, findOption } from './tcp-options.js';

// MPTCP subtypes (high nibble of byte 2).
export const MPTCP_SUB_CAPABLE = 0x0;
export const MPTCP_SUB_JOIN = 0x1;
export const MPTCP_SUB_DSS = 0x2;
export const MPTCP_SUB_ADD_ADDR = 0x3;
export const MPTCP_SUB_REMOVE_ADDR = 0x4;
export const MPTCP_SUB_PRIO = 0x5;
export const MPTCP_SUB_FAIL = 0x6;
export const MPTCP_SUB_FASTCLOSE = 0x7;
export const MPTCP_SUB_TCPRST = 0x8;

// MP_CAPABLE flags (byte 3).
export const MPC_FLAG_CHECKSUM = 0x80; // A
export const MPC_FLAG_EXTENSIBILITY = 0x40; // B: must be 0, Linux ignores the option if set
export const MPC_FLAG_NO_MORE_SUBFLOWS = 0x20; // C (v1)
export const MPC_FLAG_HMAC = 0x01; // H: HMAC-SHA256 (v1) / HMAC-SHA1 (v0)

// Status codes of decodeMptcp().
/** A well-formed MPTCP option was decoded. */
export const MPTCP_OK = 0;
/** No MPTCP option in a well-formed options area. */
export const MPTCP_ABSENT = 1;
/** The TCP options area is malformed before an MPTCP option was found. */
export const MPTCP_BAD_TCP_OPTIONS = 2;
/** MPTCP option of length 2: no subtype byte. */
export const MPTCP_TOO_SHORT = 3;
/** Length wrong for the subtype and form (given the TCP flags and payload). */
export const MPTCP_BAD_LENGTH = 4;
/** MP_CAPABLE version not 0 or 1 (a SYN may offer a higher version: RFC 8684 negotiation). */
export const MPTCP_BAD_VERSION = 5;
/** MP_CAPABLE with the B (extensibility) flag set. */
export const MPTCP_BAD_FLAGS = 6;
/** Subtype 0x9..0xf: not defined for use on the wire (0xf is private use); receivers ignore it. */
export const MPTCP_UNKNOWN_SUBTYPE = 7;

export const MPTCP_STATUS_NAMES = [
  'ok',
  'absent',
  'bad_tcp_options',
  'too_short',
  'bad_length',
  'bad_version',
  'bad_flags',
  'unknown_subtype',
] as const;

// Forms.
export const MPTCP_FORM_NONE = 0;
/** v1 SYN client->server, length 4, no key. */
export const MPTCP_FORM_CAPABLE_SYN = 1;
/** v0 SYN client->server, length 12, the client's key (sender key). */
export const MPTCP_FORM_CAPABLE_SYN_V0 = 2;
/** SYN/ACK server->client, length 12, the server's key (sender key). */
export const MPTCP_FORM_CAPABLE_SYNACK = 3;
/** Third ACK, length 20: sender (client) key at 4..11, receiver (server) key at 12..19. */
export const MPTCP_FORM_CAPABLE_ACK = 4;
/** First data (v1), length 22 or 24: both keys, data-level length (+ checksum). */
export const MPTCP_FORM_CAPABLE_DATA = 5;
/** MP_JOIN SYN, length 12: address id, receiver's token at 4..7, nonce at 8..11. */
export const MPTCP_FORM_JOIN_SYN = 6;
/** MP_JOIN SYN/ACK, length 16: address id, truncated HMAC at 4..11, nonce at 12..15. */
export const MPTCP_FORM_JOIN_SYNACK = 7;
/** MP_JOIN ACK, length 24: HMAC at 4..23. */
export const MPTCP_FORM_JOIN_ACK = 8;
/** Any other well-formed subtype (DSS, ADD_ADDR, REMOVE_ADDR, MP_PRIO, ...). */
export const MPTCP_FORM_OTHER = 9;

export const MPTCP_FORM_NAMES = [
  'none',
  'capable_syn',
  'capable_syn_v0',
  'capable_synack',
  'capable_ack',
  'capable_data',
  'join_syn',
  'join_synack',
  'join_ack',
  'other',
] as const;

const TCP_SYN = 0x02;
const TCP_ACK = 0x10;

/** Smallest legal length of each subtype (index = subtype); 0 = not defined. */
const MIN_LENGTH = new Uint8Array([4, 12, 4, 8, 4, 3, 12, 12, 4, 0, 0, 0, 0, 0, 0, 0]);

/** Decoded MPTCP option. Offsets are absolute frame offsets; -1 means absent. */
export class MptcpInfo {
  /** MPTCP_* status of the last decode. */
  status = MPTCP_ABSENT;
  /** MPTCP_FORM_*; MPTCP_FORM_NONE unless status is MPTCP_OK. */
  form = MPTCP_FORM_NONE;
  /** Offset of the option's kind byte (-1 if no MPTCP option was found). */
  offset = -1;
  /** The option's length byte. */
  length = 0;
  subtype = -1;
  /** MP_CAPABLE version (0 or 1; a SYN may offer more); -1 for other subtypes. */
  version = -1;
  /** MP_CAPABLE: byte 3. Other subtypes: the low nibble of byte 2 (MP_JOIN: backup bit). */
  flags = 0;
  senderKeyOffset = -1;
  receiverKeyOffset = -1;
  /** MP_CAPABLE data form: data-level length; -1 otherwise. */
  dataLevelLength = -1;
  /** MP_CAPABLE data form with checksum (24 bytes): the checksum; -1 otherwise. */
  checksum = -1;
  /** MP_JOIN SYN and SYN/ACK: sender's address id; -1 otherwise. */
  addressId = -1;
  /** MP_JOIN SYN and SYN/ACK: backup flag. */
  backup = false;
  /** MP_JOIN SYN: the receiver's token (4 bytes). */
  tokenOffset = -1;
  /** MP_JOIN SYN (8..11) and SYN/ACK (12..15): sender's nonce (4 bytes). */
  nonceOffset = -1;
  /** MP_JOIN SYN/ACK (8 bytes, truncated) and ACK (20 bytes): the HMAC. */
  hmacOffset = -1;
  hmacLength = 0;

  reset(): void {
    this.status = MPTCP_ABSENT;
    this.form = MPTCP_FORM_NONE;
    this.offset = -1;
    this.length = 0;
    this.subtype = -1;
    this.version = -1;
    this.flags = 0;
    this.senderKeyOffset = -1;
    this.receiverKeyOffset = -1;
    this.dataLevelLength = -1;
    this.checksum = -1;
    this.addressId = -1;
    this.backup = false;
    this.tokenOffset = -1;
    this.nonceOffset = -1;
    this.hmacOffset = -1;
    this.hmacLength = 0;
  }
}

/** Reads a 32-bit token (as on the wire, big-endian) at `off` as an unsigned number. */
export function readToken(frame: Uint8Array, off: number): number {
  return ((frame[off] << 24) | (frame[off + 1] << 16) | (frame[off + 2] << 8) | frame[off + 3]) >>> 0;
}

/**
 * Finds the first MPTCP option in the options area and decodes it into `info`.
 * Returns info.status. `payloadLen` is the TCP payload length (it picks 20 vs 22/24 bytes).
 */
export function decodeMptcp(
  frame: Uint8Array,
  optionsOffset: number,
  optionsLen: number,
  tcpFlags: number,
  payloadLen: number,
  info: MptcpInfo,
): number {
  info.reset();
  const at = findOption(frame, optionsOffset, optionsLen, TCPOPT_MPTCP);
  if (at === FIND_NOT_FOUND) return MPTCP_ABSENT;
  if (at === FIND_MALFORMED) {
    info.status = MPTCP_BAD_TCP_OPTIONS;
    return MPTCP_BAD_TCP_OPTIONS;
  }
  return decodeMptcpAt(frame, at, tcpFlags, payloadLen, info);
}

/**
 * Decodes the MPTCP option whose kind byte is at `at`. Precondition (findOption guarantees
 * it): the length byte exists, is >= 2 and the option lies inside the frame. `info` should be
 * reset (decodeMptcp does it).
 */
export function decodeMptcpAt(
  frame: Uint8Array,
  at: number,
  tcpFlags: number,
  payloadLen: number,
  info: MptcpInfo,
): number {
  const len = frame[at + 1];
  info.offset = at;
  info.length = len;
  if (len < 3) return fail(info, MPTCP_TOO_SHORT);
  const b2 = frame[at + 2];
  const subtype = b2 >>> 4;
  info.subtype = subtype;
  const syn = (tcpFlags & TCP_SYN) !== 0;
  const ack = (tcpFlags & TCP_ACK) !== 0;

  if (subtype === MPTCP_SUB_CAPABLE) {
    if (len < 4) return fail(info, MPTCP_BAD_LENGTH);
    const version = b2 & 0x0f;
    const flags = frame[at + 3];
    info.version = version;
    info.flags = flags;
    if ((flags & MPC_FLAG_EXTENSIBILITY) !== 0) return fail(info, MPTCP_BAD_FLAGS);
    if (syn && !ack) {
      if (len === 4) {
        // A v0 SYN must carry the key; a SYN may offer any version >= 1.
        if (version === 0) return fail(info, MPTCP_BAD_LENGTH);
        return ok(info, MPTCP_FORM_CAPABLE_SYN);
      }
      if (len === 12) {
        if (version !== 0) return fail(info, version === 1 ? MPTCP_BAD_LENGTH : MPTCP_BAD_VERSION);
        info.senderKeyOffset = at + 4;
        return ok(info, MPTCP_FORM_CAPABLE_SYN_V0);
      }
      return fail(info, MPTCP_BAD_LENGTH);
    }
    if (version > 1) return fail(info, MPTCP_BAD_VERSION);
    if (syn) {
      if (len !== 12) return fail(info, MPTCP_BAD_LENGTH);
      info.senderKeyOffset = at + 4;
      return ok(info, MPTCP_FORM_CAPABLE_SYNACK);
    }
    if (len === 20) {
      // v1 carries data only in the 22/24-byte form; RFC 6824 (v0) has no data form.
      if (payloadLen > 0 && version === 1) return fail(info, MPTCP_BAD_LENGTH);
      info.senderKeyOffset = at + 4;
      info.receiverKeyOffset = at + 12;
      return ok(info, MPTCP_FORM_CAPABLE_ACK);
    }
    if (len === 22 || len === 24) {
      if (payloadLen <= 0 || version !== 1) return fail(info, MPTCP_BAD_LENGTH);
      info.senderKeyOffset = at + 4;
      info.receiverKeyOffset = at + 12;
      info.dataLevelLength = (frame[at + 20] << 8) | frame[at + 21];
      if (len === 24) info.checksum = (frame[at + 22] << 8) | frame[at + 23];
      return ok(info, MPTCP_FORM_CAPABLE_DATA);
    }
    return fail(info, MPTCP_BAD_LENGTH);
  }

  info.flags = b2 & 0x0f;

  if (subtype === MPTCP_SUB_JOIN) {
    if (syn && !ack) {
      if (len !== 12) return fail(info, MPTCP_BAD_LENGTH);
      info.backup = (b2 & 0x01) !== 0;
      info.addressId = frame[at + 3];
      info.tokenOffset = at + 4;
      info.nonceOffset = at + 8;
      return ok(info, MPTCP_FORM_JOIN_SYN);
    }
    if (syn) {
      if (len !== 16) return fail(info, MPTCP_BAD_LENGTH);
      info.backup = (b2 & 0x01) !== 0;
      info.addressId = frame[at + 3];
      info.hmacOffset = at + 4;
      info.hmacLength = 8;
      info.nonceOffset = at + 12;
      return ok(info, MPTCP_FORM_JOIN_SYNACK);
    }
    if (len !== 24) return fail(info, MPTCP_BAD_LENGTH);
    info.hmacOffset = at + 4;
    info.hmacLength = 20;
    return ok(info, MPTCP_FORM_JOIN_ACK);
  }

  const min = MIN_LENGTH[subtype];
  if (min === 0) return fail(info, MPTCP_UNKNOWN_SUBTYPE);
  if (len < min) return fail(info, MPTCP_BAD_LENGTH);
  return ok(info, MPTCP_FORM_OTHER);
}

function ok(info: MptcpInfo, form: number): number {
  info.form = form;
  info.status = MPTCP_OK;
  return MPTCP_OK;
}

/** Marks a malformed option: the form and every located field are cleared. */
function fail(info: MptcpInfo, status: number): number {
  info.status = status;
  info.form = MPTCP_FORM_NONE;
  info.senderKeyOffset = -1;
  info.receiverKeyOffset = -1;
  info.tokenOffset = -1;
  info.nonceOffset = -1;
  info.hmacOffset = -1;
  info.hmacLength = 0;
  info.addressId = -1;
  info.backup = false;
  info.dataLevelLength = -1;
  info.checksum = -1;
  return status;
}
