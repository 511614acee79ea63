/**
 * Playout delay on a lossy, far link: wait long enough for retransmissions.
 *
 * The SFU repairs every lost packet it is asked for, but a repair arrives one round trip after the
 * loss. Chromium's own video jitter buffer grows only to its jitter estimate (~100–170 ms on a
 * 300 ms-RTT link at 5 % loss), so a repaired frame comes after its playout time: the picture stops
 * until the repair and then jumps (a stream of short freezes), or the frame is dropped. A rural
 * classroom would rather watch the teacher a few hundred milliseconds later than watch a stutter.
 *
 * So while the subscriber connection is repairing video (NACKs sent in the last `HOLD_MS`), every
 * video receiver gets a jitter-buffer target of as many round trips as repairs take, plus `MARGIN_MS`
 * (between `MIN_MS` and `MAX_MS`): a retransmission is lost as often as any packet, and its repair
 * comes a round trip later again. With one round trip at 5 % loss, each twice-lost packet (about one
 * every 3 s at 720p) still froze the picture for a quarter of a second; so the rounds follow the
 * share of the video's payload that arrives as repairs (`ROUNDS`). `HOLD_MS` after the last repair the
 * browser's own target is restored. A clean link never gets the extra delay.
 *
 * Owns: `RTCRtpReceiver.jitterBufferTarget` of one connection's video receivers. Must not: touch
 * senders, audio receivers (Chromium keeps audio in sync with video itself), or the signaling.
 */

export const CHECK_MS = 2000;
export const HOLD_MS = 20000;
export const MARGIN_MS = 100;
export const MIN_MS = 200;
export const MAX_MS = 1200;
/** Round trips to wait for, by the share of the video's payload received as repairs (smoothed): below 1.5 %
 * one, below 8 % two, below 15 % three, else four (`MAX_MS` bounds them all). */
export const ROUNDS = [[0.015, 1], [0.08, 2], [0.15, 3], [Infinity, 4]];
/** NACKs in one check that count as "repairing" (one stray NACK does not). */
export const NACKS = 2;

/** Round trips a repair may take when `repairShare` of the video's payload arrives as repairs. */
export function roundsFor(repairShare) {
  for (const [below, rounds] of ROUNDS) if (repairShare < below) return rounds;
  return ROUNDS[ROUNDS.length - 1][1];
}

/** The target for a round trip of `rttMs` and that repair share, or null for the browser's own. */
export function targetFor(rttMs, repairing, repairShare = 0) {
  if (!repairing || !(rttMs > 0)) return null;
  return Math.round(Math.min(MAX_MS, Math.max(MIN_MS, roundsFor(repairShare) * rttMs + MARGIN_MS)));
}

export class PlayoutDelay {
  /** `pcOf()`: the current subscriber RTCPeerConnection (or null); it may be replaced on a restart. */
  constructor(pcOf) {
    this._pcOf = pcOf;
    this._timer = null;
    this._nacks = new Map(); // inbound-rtp id → [nackCount, retransmitted bytes, bytes] at the last check
    this._repairShare = null; // smoothed share of the video's payload bytes received as repairs
    this._lastRepairAt = -Infinity;
    this._rttMs = 0;
    /** The target set now (ms), or null: what tests and the bench read. */
    this.targetMs = null;
  }

  start() {
    this.stop();
    this._timer = setInterval(() => this.check().catch(() => {}), CHECK_MS);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
  }

  async check(now = performance.now()) {
    const pc = this._pcOf();
    if (!pc || pc.connectionState === "closed") return;
    let nacked = 0, rtt = 0, repaired = 0, received = 0;
    const seen = new Map();
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        // bytes, not packets: the SFU's probes are padding-only packets on the RTX stream, which Chromium
        // counts among retransmitted packets but which carry no payload bytes
        const now3 = [s.nackCount || 0, s.retransmittedBytesReceived || 0, s.bytesReceived || 0];
        const was = this._nacks.get(s.id) || now3;
        nacked += Math.max(0, now3[0] - was[0]);
        repaired += Math.max(0, now3[1] - was[1]);
        received += Math.max(0, now3[2] - was[2]);
        seen.set(s.id, now3);
      } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = Math.max(rtt, s.currentRoundTripTime * 1000);
      }
    });
    this._nacks = seen;
    if (rtt > 0) this._rttMs = rtt;
    if (nacked >= NACKS) this._lastRepairAt = now;
    if (received > 0) {
      const share = repaired / received;
      this._repairShare = this._repairShare === null ? share : 0.7 * this._repairShare + 0.3 * share;
    }
    const want = targetFor(this._rttMs, now - this._lastRepairAt < HOLD_MS, this._repairShare || 0);
    // while repairing, follow the round trip only when it moved by more than 50 ms (no churn)
    if (want === null || this.targetMs === null || Math.abs(want - this.targetMs) >= 50) this.targetMs = want;
    for (const r of pc.getReceivers()) {
      if (!r.track || r.track.kind !== "video" || !("jitterBufferTarget" in r)) continue;
      if (r.jitterBufferTarget !== this.targetMs) r.jitterBufferTarget = this.targetMs; // new receivers too
    }
  }
}
