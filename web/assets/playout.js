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
 * video receiver gets a jitter-buffer target of one round trip plus `MARGIN_MS` (between `MIN_MS`
 * and `MAX_MS`); `HOLD_MS` after the last repair the browser's own target is restored. A clean link
 * never gets the extra delay.
 *
 * Owns: `RTCRtpReceiver.jitterBufferTarget` of one connection's video receivers. Must not: touch
 * senders, audio receivers (Chromium keeps audio in sync with video itself), or the signaling.
 */

export const CHECK_MS = 2000;
export const HOLD_MS = 20000;
export const MARGIN_MS = 150;
export const MIN_MS = 200;
export const MAX_MS = 800;
/** NACKs in one check that count as "repairing" (one stray NACK does not). */
export const NACKS = 2;

/** The target for a round trip of `rttMs`, or null for the browser's own. */
export function targetFor(rttMs, repairing) {
  if (!repairing || !(rttMs > 0)) return null;
  return Math.round(Math.min(MAX_MS, Math.max(MIN_MS, rttMs + MARGIN_MS)));
}

export class PlayoutDelay {
  /** `pcOf()`: the current subscriber RTCPeerConnection (or null); it may be replaced on a restart. */
  constructor(pcOf) {
    this._pcOf = pcOf;
    this._timer = null;
    this._nacks = new Map(); // inbound-rtp id → nackCount at the last check
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
    let nacked = 0, rtt = 0;
    const seen = new Map();
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        const n = s.nackCount || 0;
        nacked += Math.max(0, n - (this._nacks.get(s.id) ?? n));
        seen.set(s.id, n);
      } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = Math.max(rtt, s.currentRoundTripTime * 1000);
      }
    });
    this._nacks = seen;
    if (rtt > 0) this._rttMs = rtt;
    if (nacked >= NACKS) this._lastRepairAt = now;
    const want = targetFor(this._rttMs, now - this._lastRepairAt < HOLD_MS);
    // while repairing, follow the round trip only when it moved by more than 50 ms (no churn)
    if (want === null || this.targetMs === null || Math.abs(want - this.targetMs) >= 50) this.targetMs = want;
    for (const r of pc.getReceivers()) {
      if (!r.track || r.track.kind !== "video" || !("jitterBufferTarget" in r)) continue;
      if (r.jitterBufferTarget !== this.targetMs) r.jitterBufferTarget = this.targetMs; // new receivers too
    }
  }
}
