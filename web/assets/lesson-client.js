/**
 * SanKe lesson client: the browser side of the lesson signaling protocol (docs/protocol.md),
 * the JS twin of signaling/client.py. One ES module, no build step.
 *
 *   import { LessonClient } from "/assets/lesson-client.js";
 *   const lc = new LessonClient(lessonId, { onTrack, ... });   // options below
 *   lc.on("state", ({state, reason, message}) => ...);
 *   await lc.connect();                 // resolves once joined (waits while the room is not open)
 *   await lc.publishUserMedia({video: true, audio: true});      // camera + microphone
 *   await lc.publishScreen();           // main classroom only; ends itself when sharing stops
 *   lc.setSubscriptions((participants, room) => [{participant_id, source, layer}, ...]);
 *   lc.chat("…"); lc.raiseHand(true); lc.setOnStage(pid | null); lc.mute(pid, "microphone", true);
 *   lc.muteAll(true); lc.setMuted("microphone", true); await lc.leave();
 *
 * Options (all optional):
 *   getToken()      → Promise<{token, room_open, room_opens_at, lesson_role}>; default: POST
 *                     /api/v1/lessons/{id}/join-token through /assets/api.js
 *   simulcast       false: the camera in one layer instead of CAMERA_LAYERS (low, medium, high)
 *   observer        receive only, the lowest simulcast layer for every video unless a subscription
 *                   asks for a layer (巡课: the wall stays low, the full view asks "high"); also
 *                   implied by an `observer` join token
 *   waitPollMs      least time between asks while the room is not open (default 5000; at most 15 s,
 *                   or until the room_opens_at of the token)
 *   resume          keep session_id + last seq in sessionStorage so a reload resumes within the
 *                   grace period (default true)
 *   audioRed        false: send the microphone as plain Opus instead of RED (RFC 2198: each packet
 *                   repeats the two before it, so a lost one is repaired without a round trip)
 *   preferH264      true: offer H.264 first for camera and screen (a 名校网络课堂, whose HLS stream
 *                   carries H.264 as sent); VP8 stays offered as the fallback
 *   candidateFilter (candidateLine) → bool: which local ICE candidates go into the SDP; default drops
 *                   mDNS ".local" candidates, and keeps only loopback ones when the page comes from
 *                   127.x / [::1] (the server refuses an SDP with a candidate outside its
 *                   SANKE_ICE_ALLOWED_NETWORKS, it does not filter it)
 *
 * Properties: state, role, participantId, sessionId, participants (Map id → info, never observers),
 *   room (RoomState), me (own ParticipantInfo), joined (the last `joined`), remote (Map
 *   "pid/source" → {participantId, source, track, stream, mid}), local (Map source → MediaStreamTrack),
 *   handQueue (main classroom), publisher, subscriber (RTCPeerConnection | null).
 *
 * Events (lc.on(type, fn) → unsubscribe function):
 *   state        {state, reason, message, attempt, retryInMs, opensAt}
 *                state: idle | waiting (room not open) | connecting | joined | reconnecting |
 *                       closed (room closed, left, replaced, kicked) | failed (token, role, version;
                lesson_over: the lesson was held, missed or cancelled before this join)
 *   joined       the `joined` or `resumed` message (after the snapshot is applied)
 *   roster       Map of participants (after any join/leave/update)
 *   room         RoomState
 *   track        {participantId, source, track, stream, mid}   a remote track arrived
 *   trackended   {participantId, source, mid}                  it went away (m-line removed)
 *   local        {source, track | null}                        own published track changed
 *   chat         the `chat` message;  hand  the `hand_raised` message;  stage  {participantId}
 *   muted        the `muted` message (the main classroom muted / released one of our sources)
 *   linkquality  the `link_quality_update` message (main classroom, observers)
 *   localquality {quality, loss, rtt_ms, jitter_ms, bitrate_kbps}  own link, from getStats
 *   mediarestart {targets, reason, by}   peer connections closed and being made again (below)
 *   error        the `error` message of a request nobody awaited, or {code, message}
 *   message      every server message, raw
 *
 * Reconnect: a socket that drops (or a ping timeout) is re-opened with a back-off of 0.2, 0.3, 0.3,
 * 0.5, 0.5, 1, 2, 4, 8 s (then 10 s), with a new join token, resuming the session (flow 7: keep_media
 * when the peer connections are still up, else new ones and the tracks are published again).  The
 * token's answer names the node that owns the room now: after its node died (or closed the socket
 * with 4010, the room moved) the page joins there, afresh.  While the dead node's lease is overdue the
 * answer says when it lapses (`lease_lapses_in_ms`), and a page that cannot reach that node asks again
 * right then (LAPSE_MARGIN_MS after), instead of after the next step of the back-off.
 *
 * Media that comes back by itself: a peer connection that fails, or stays disconnected for
 * DISCONNECTED_GRACE_MS, is closed and made again (`media_restart` to the server: the publisher
 * publishes its tracks again, the server offers the subscriptions on a new subscriber connection);
 * when the server sends `media_restart` (its media worker was replaced, or it saw the connection
 * end) the named connections are rebuilt the same way.
 */
import { api, ApiError } from "/assets/api.js";
import { PlayoutDelay } from "/assets/playout.js";

export const PROTOCOL_VERSION = 1;
// short at first: a room whose node died is placed on another node within a lease (3 s), and the
// page should be back within 5 s; longer once it is clearly a network outage
const BACKOFF_MS = [200, 300, 300, 500, 500, 1000, 2000, 4000, 8000, 10000];
/** After a join-token answer's `lease_lapses_in_ms`: ask again this long after the lease lapsed. */
const LAPSE_MARGIN_MS = 50;
const STORE_PREFIX = "sanke.lesson.";
const LINK_REPORT_MS = 4000;
/** A peer connection `disconnected` this long (consent checks unanswered) is rebuilt; `failed` at once. */
export const DISCONNECTED_GRACE_MS = 3000;
/**
 * The camera goes out in three simulcast layers, lowest first, so the SFU can give each subscriber
 * the best one its link carries (a village link on 300 kbit/s still gets the low one, and an
 * observer's grid always gets it); `simulcast: false` sends one layer. Layers nobody receives are
 * paused here when the server says so (`layers_wanted`: dynacast).
 */
export const CAMERA_LAYERS = [
  { layer: "low", rid: "q", scale: 4, max_bitrate_kbps: 150 },
  { layer: "medium", rid: "h", scale: 2, max_bitrate_kbps: 500 },
  { layer: "high", rid: "f", scale: 1, max_bitrate_kbps: 1500 },
];
/**
 * One temporal layer per simulcast layer. Chromium's default for VP8 simulcast is three (L1T3); the SFU
 * chooses spatial layers only, so those temporal layers bought nothing and cost a far classroom a third of
 * its frames: a frame of an upper temporal layer whose repair comes one round trip late is dropped by
 * Chromium's receiver (11.6 of 20 fps at 5 % loss and 300 ms RTT), where with one temporal layer it waits
 * for the repair (19.9 of 20 fps, with the playout delay of playout.js).
 */
const CAMERA_SCALABILITY = "L1T1";
const CAMERA_KBPS = 1200;
const SCREEN_KBPS = 1000;

/** An `error` answer of the server to one request. */
export class LessonError extends Error {
  constructor(msg) {
    super(msg.message || msg.code);
    this.name = "LessonError";
    this.code = msg.code;
    this.reply = msg;
  }
}

/**
 * The default choice of local candidates: never mDNS names (the server refuses them); and when the
 * page itself comes from a loopback address (a terminal running SanKe on the same machine, the
 * tests), only loopback candidates: nothing else can reach the server, and a server restricted to
 * loopback (SANKE_ICE_ALLOWED_NETWORKS) refuses an SDP with any other address.
 */
function defaultCandidateFilter(line) {
  const address = line.split(" ")[4] || "";
  if (/\.local$/i.test(address)) return false;
  const host = location.hostname.replace(/^\[|\]$/g, "");
  if (/^127\./.test(host)) return /^127\./.test(address);
  if (host === "::1") return address === "::1";
  return true;
}

function filterSdp(sdp, keep) {
  const lines = sdp.split(/\r?\n/).filter((l) => l && (!l.startsWith("a=candidate:") || keep(l)));
  return lines.join("\r\n") + "\r\n";
}

/** Offer RED of Opus first on an audio transceiver, so the browser sends it when the server accepts it
 * (Chromium offers RED after Opus by default, and then sends plain Opus). Opus stays offered. */
function preferRed(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function" || !RTCRtpSender.getCapabilities) return;
  const codecs = (RTCRtpSender.getCapabilities("audio") || {}).codecs || [];
  const isRed = (c) => c.mimeType.toLowerCase() === "audio/red";
  if (!codecs.some(isRed) || !codecs.some((c) => c.mimeType.toLowerCase() === "audio/opus")) return;
  try {
    transceiver.setCodecPreferences([...codecs.filter(isRed), ...codecs.filter((c) => !isRed(c))]);
  } catch (e) {
    console.warn("lesson-client: RED audio not available", e);
  }
}

/** Offer H.264 first on a video transceiver (constrained baseline, packetization-mode 1 first): a
 * 名校网络课堂's stream (HLS) carries the main classroom's H.264 as it comes, and cannot carry VP8.
 * The other codecs stay offered after it, so a browser without an H.264 encoder still sends VP8. */
export function preferH264(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function" || !RTCRtpSender.getCapabilities) return false;
  const codecs = (RTCRtpSender.getCapabilities("video") || {}).codecs || [];
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== "video/h264") return 9;
    const fmtp = c.sdpFmtpLine || "";
    return (fmtp.includes("packetization-mode=1") ? 0 : 2) + (fmtp.includes("profile-level-id=42e01f") ? 0 : 1);
  };
  if (!codecs.some((c) => rank(c) < 9)) return false;
  try {
    transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
    return true;
  } catch (e) {
    console.warn("lesson-client: H.264 not available", e);
    return false;
  }
}

function waitGathering(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); clearTimeout(t); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const t = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export function qualityOf({ loss = 0, rtt_ms = 0 }) {
  if (loss >= 0.2 || rtt_ms >= 1500) return "lost";
  if (loss >= 0.05 || rtt_ms >= 400) return "poor";
  if (loss >= 0.01 || rtt_ms >= 150) return "good";
  return "excellent";
}

export class LessonClient {
  constructor(lessonId, opts = {}) {
    this.lessonId = lessonId;
    this.opts = { waitPollMs: 5000, resume: true, observer: false, candidateFilter: defaultCandidateFilter, ...opts };
    this.getToken = opts.getToken || (() => api(`/lessons/${lessonId}/join-token`, { method: "POST" }));
    this.state = "idle";
    this.role = null;
    this.participantId = null;
    this.sessionId = null;
    this.joined = null;
    this.me = null;
    this.participants = new Map();
    this.room = null;
    this.handQueue = [];
    this.remote = new Map();
    this.local = new Map();        // source → MediaStreamTrack
    this.publisher = null;
    this.subscriber = null;
    /** Longer video playout while the subscriber connection is repairing losses (playout.js). */
    this.playout = new PlayoutDelay(() => this.subscriber);
    this.lastSeq = 0;
    this._listeners = new Map();
    this._ws = null;
    this._rid = 0;
    this._pending = new Map();      // request_id → {resolve, reject}
    this._senders = new Map();      // source → RTCRtpTransceiver
    this._layersWanted = new Map(); // source → rids the server wants sent (dynacast)
    this._mids = new Map();         // mid → {participantId, source}
    this._subsPolicy = null;
    this._subsSent = null;
    this._pubChain = Promise.resolve();
    this._subChain = Promise.resolve();
    this._attempt = 0;
    this._lapseAt = null;           // Date.now() when the lease of the node last named lapses (if overdue)
    this._timers = new Set();
    this._closing = false;
    this._lastHeard = 0;
    this._joinWaiters = [];
    this._prevBytes = null;
  }

  // ---------------------------------------------------------------- events

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type).delete(fn);
  }

  _emit(type, detail) {
    for (const fn of this._listeners.get(type) || []) {
      try { fn(detail); } catch (e) { console.warn("lesson-client listener", type, e); }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, ...extra });
  }

  get isObserver() { return this.opts.observer || this.role === "observer"; }

  // ---------------------------------------------------------------- connection

  /** Join (or resume a stored session). Resolves with `joined`/`resumed`; rejects on a final failure. */
  connect() {
    this._closing = false;
    const p = new Promise((resolve, reject) => this._joinWaiters.push({ resolve, reject }));
    this._open();
    return p;
  }

  _settleJoin(err, value) {
    const ws = this._joinWaiters.splice(0);
    for (const w of ws) err ? w.reject(err) : w.resolve(value);
  }

  _later(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); }, ms);
    this._timers.add(t);
    return t;
  }

  _stored() {
    if (!this.opts.resume) return null;
    try {
      const s = JSON.parse(sessionStorage.getItem(STORE_PREFIX + this.lessonId) || "null");
      if (s && s.sessionId && Date.now() - s.at < (s.grace || 30) * 1000) return s;
    } catch { /* ignore */ }
    return null;
  }

  _store() {
    if (!this.opts.resume || !this.sessionId) return;
    // the snapshot as it is now, too: a reloaded page resumes with it (the server replays only deltas)
    sessionStorage.setItem(STORE_PREFIX + this.lessonId, JSON.stringify({
      sessionId: this.sessionId, lastSeq: this.lastSeq, at: Date.now(),
      grace: (this.joined && this.joined.resume_grace_s) || 30,
      joined: this.joined, me: this.me, room: this.room, participants: [...this.participants.values()],
    }));
  }

  _restore(stored) {
    this.joined = stored.joined;
    this.sessionId = stored.sessionId;
    this.lastSeq = stored.lastSeq;
    this.me = stored.me;
    this.participantId = stored.me.participant_id;
    this.role = stored.me.role;
    this.room = stored.room;
    this.handQueue = (stored.room && stored.room.hands_raised) || [];
    this.participants = new Map((stored.participants || []).map((p) => [p.participant_id, p]));
  }

  _forget() { try { sessionStorage.removeItem(STORE_PREFIX + this.lessonId); } catch { /* ignore */ } }

  async _open() {
    if (this._closing) return;
    this._lapseAt = null;
    const reconnecting = this.sessionId !== null || this._attempt > 0;
    this._setState(reconnecting ? "reconnecting" : "connecting", { attempt: this._attempt });
    let tok;
    try {
      tok = await this.getToken();
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) return this._fail("not_allowed", e.message);
      if (e instanceof ApiError && e.status === 404) return this._fail("not_found", e.message);
      // the lesson is over (held, missed) or cancelled: nothing to wait for
      if (e instanceof ApiError && e.status === 409) return this._fail("lesson_over", e.message);
      if (e instanceof ApiError && e.status === 401) return this._fail("token_expired", e.message);
      return this._retry(e instanceof ApiError && e.status === 0 ? "unreachable" : "network", e.message);
    }
    if (this._closing) return;
    this.role = tok.lesson_role;
    // the owner's lease is overdue (its node died?): should its socket fail, ask again once it lapsed
    this._lapseAt = typeof tok.lease_lapses_in_ms === "number" ? Date.now() + tok.lease_lapses_in_ms : null;
    if (tok.room_open === false) {
      this._setState("waiting", { reason: "room_not_open", opensAt: tok.room_opens_at, startsAt: tok.starts_at });
      // ask again shortly before the room opens (never more often than waitPollMs, at least every 15 s)
      const untilOpen = tok.room_opens_at ? new Date(tok.room_opens_at).getTime() - Date.now() : 0;
      this._later(() => this._open(), Math.min(15000, Math.max(this.opts.waitPollMs, untilOpen)));
      return;
    }
    // the node that owns the room: named by a redirect just received, else by the token's answer
    // (several nodes), else this page's own server
    const redirect = this._redirectTo;
    this._redirectTo = null;
    const url = redirect || tok.ws_url || location.origin.replace(/^http/, "ws") + `/api/v1/lessons/${this.lessonId}/ws`;
    let ws;
    try { ws = new WebSocket(url); } catch (e) { return this._retry("network", String(e)); }
    this._ws = ws;
    ws.onopen = () => {
      const join = { type: "join", request_id: "join", protocol_version: PROTOCOL_VERSION, token: tok.token };
      let stored = this.sessionId ? { sessionId: this.sessionId, lastSeq: this.lastSeq } : this._stored();
      if (stored && !this.sessionId) {
        if (stored.joined && stored.me) this._restore(stored);
        else stored = null;
      }
      if (stored) {
        join.resume_session_id = stored.sessionId;
        join.last_seq = stored.lastSeq;
        join.keep_media = this._mediaAlive();
      }
      this._keepMedia = !!join.keep_media;
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this._onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._stopPing();
      if (this._closing || this.state === "closed" || this.state === "failed") return;
      if (ev.code === 4010 && this._redirectTo && !this._redirected) {
        this._redirected = true; // followed once; joined clears it
        this._open();
        return;
      }
      if (ev.code === 4010) this._redirectTo = null;
      if (ev.code === 4010 && this._moving) { // announced: join the next node at once, the banner stays
        const message = this._moving;
        this._moving = null;
        this._setState("reconnecting", { reason: "room_moving", message, attempt: this._attempt });
        this._later(() => this._open(), 0);
        return;
      }
      if (ev.code === 4004 && this._closeReason === "room_not_open") {
        this._setState("waiting", { reason: "room_not_open" });
        this._later(() => this._open(), this.opts.waitPollMs);
        return;
      }
      this._retry(navigator.onLine === false ? "offline" : "network", "连接已断开");
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _mediaAlive() {
    const ok = (pc) => !pc || ["new", "connecting", "connected"].includes(pc.connectionState);
    return !!(this.publisher || this.subscriber) && ok(this.publisher) && ok(this.subscriber);
  }

  _retry(reason, message) {
    if (this._closing) return;
    let delay = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)];
    // the node the answer named is unreachable and its lease overdue: the room is placed anew right after
    // the lease lapses (asking sooner gets the same node; asking later only waits longer)
    if (this._lapseAt !== null) delay = Math.max(0, this._lapseAt - Date.now()) + LAPSE_MARGIN_MS;
    this._lapseAt = null;
    this._attempt += 1;
    this._setState("reconnecting", { reason, message, attempt: this._attempt, retryInMs: delay });
    this._later(() => this._open(), delay);
  }

  _fail(reason, message) {
    this._setState("failed", { reason, message });
    this._settleJoin(new LessonError({ code: reason, message }));
    this._teardown();
  }

  _finish(reason, message) {
    this._closing = true;
    this._forget();
    this._setState("closed", { reason, message });
    this._settleJoin(new LessonError({ code: reason, message }));
    this._teardown();
  }

  /** Leave the lesson for good (the session cannot be resumed). */
  async leave() {
    this._closing = true;
    this._forget();
    if (this._ws && this._ws.readyState === WebSocket.OPEN) {
      try { this._ws.send(JSON.stringify({ type: "leave" })); } catch { /* ignore */ }
    }
    this._teardown();
    this._setState("closed", { reason: "client_left" });
  }

  /** Vanish without `leave` (tests: like a dropped network); the client reconnects by itself. */
  dropSocket() { if (this._ws) this._ws.close(); }

  _teardown() {
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._stopPing();
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    this.playout.stop();
    const ws = this._ws;
    this._ws = null;
    if (ws) { try { ws.close(); } catch { /* ignore */ } }
    for (const [, p] of this._pending) p.reject(new LessonError({ code: "closed", message: "连接已关闭" }));
    this._pending.clear();
    this._closeMedia(true);
  }

  _closeMedia(stopLocal) {
    for (const pc of [this.publisher, this.subscriber]) if (pc) { try { pc.close(); } catch { /* ignore */ } }
    this.publisher = null;
    this.subscriber = null;
    this._senders.clear();
    for (const [key, r] of this.remote) this._emit("trackended", { participantId: r.participantId, source: r.source, mid: r.mid, key });
    this.remote.clear();
    this._mids.clear();
    if (stopLocal) {
      for (const [source, track] of this.local) { track.stop(); this._emit("local", { source, track: null }); }
      this.local.clear();
    }
  }

  _startPing() {
    this._stopPing();
    const interval = ((this.joined && this.joined.ping_interval_s) || 15) * 1000;
    const timeout = ((this.joined && this.joined.ping_timeout_s) || 45) * 1000;
    this._lastHeard = Date.now();
    this._pingTimer = setInterval(() => {
      if (Date.now() - this._lastHeard > timeout) { this.dropSocket(); return; }
      this.send({ type: "ping", ts: Date.now() });
    }, interval);
  }

  _stopPing() { clearInterval(this._pingTimer); this._pingTimer = null; }

  // ---------------------------------------------------------------- messages

  /** Send a message as it is (no reply awaited). */
  send(msg) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(JSON.stringify(msg));
    return true;
  }

  /** Send with a fresh request_id; resolves with the `ack`/`answer`, rejects with LessonError. */
  request(msg, timeoutMs = 10000) {
    const request_id = `r${++this._rid}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...msg, request_id })) {
        reject(new LessonError({ code: "not_connected", message: "尚未连接课堂" }));
        return;
      }
      const t = setTimeout(() => {
        this._pending.delete(request_id);
        reject(new LessonError({ code: "timeout", message: "服务器未响应" }));
      }, timeoutMs);
      this._pending.set(request_id, {
        resolve: (m) => { clearTimeout(t); resolve(m); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
    });
  }

  _onMessage(msg) {
    this._lastHeard = Date.now();
    if (typeof msg.seq === "number" && msg.type !== "joined") this.lastSeq = Math.max(this.lastSeq, msg.seq);
    const waiter = msg.request_id && this._pending.get(msg.request_id);
    if (waiter && ["ack", "error", "answer", "pong"].includes(msg.type)) {
      this._pending.delete(msg.request_id);
      msg.type === "error" ? waiter.reject(new LessonError(msg)) : waiter.resolve(msg);
    }
    switch (msg.type) {
      case "redirect": this._redirectTo = msg.ws_url; break; // the room lives on another node (close 4010 follows)
      case "room_moving": // this node is being drained: the lesson moves (close 4010 follows; a new token names the node)
        this._moving = msg.message;
        this._setState("reconnecting", { reason: "room_moving", message: msg.message, attempt: this._attempt });
        break;
      case "joined": this._redirected = false; this._onJoined(msg); break;
      case "resumed": this._onResumed(msg); break;
      case "participant_joined":
      case "participant_updated":
        this.participants.set(msg.participant.participant_id, msg.participant);
        if (msg.participant.participant_id === this.participantId) this.me = msg.participant;
        this._rosterChanged();
        break;
      case "participant_left":
        this.participants.delete(msg.participant_id);
        this._rosterChanged();
        break;
      case "room_updated":
        this.room = msg.room;
        this.handQueue = msg.room.hands_raised || [];
        this._emit("room", this.room);
        this._applySubscriptions();
        break;
      case "on_stage_changed":
        if (this.room) this.room = { ...this.room, on_stage: msg.participant_id };
        this._emit("stage", { participantId: msg.participant_id });
        this._applySubscriptions();
        break;
      case "offer": this._onServerOffer(msg); break;
      case "chat": this._emit("chat", msg); break;
      case "hand_raised": this.handQueue = msg.queue; this._emit("hand", msg); break;
      case "muted": this._onMuted(msg); break;
      case "link_quality_update": this._emit("linkquality", msg); break;
      case "layers_wanted": this._onLayersWanted(msg); break;
      case "media_restart": this._restartMedia(msg.targets || [], msg.reason, "server"); break;
      case "leave": this._onLeave(msg); break;
      case "error":
        if (msg.request_id === "join") this._onJoinError(msg);
        else if (!waiter) this._emit("error", msg);
        break;
      default: break;
    }
    if (this.sessionId) this._store();
    this._emit("message", msg);
  }

  _onJoinError(msg) {
    this._closeReason = msg.code;
    if (msg.code === "room_not_open") return; // onclose waits and retries
    if (msg.code === "room_closed") return this._finish("room_closed", msg.message);
    if (msg.code === "token_expired") return; // onclose: a new token on the retry
    this._fail(msg.code, msg.message);
  }

  _onJoined(msg) {
    const fresh = this.sessionId !== msg.session_id;
    this.joined = msg;
    this.sessionId = msg.session_id;
    this.participantId = msg.participant.participant_id;
    this.me = msg.participant;
    this.role = msg.participant.role;
    this.lastSeq = msg.seq;
    this.participants = new Map(msg.participants.map((p) => [p.participant_id, p]));
    this.room = msg.room;
    this.handQueue = msg.room.hands_raised || [];
    this._attempt = 0;
    this._lapseAt = null;
    this._closeReason = null;
    // a fresh session: new peer connections; our tracks are published again, subscriptions re-sent
    const keepTracks = new Map(this.local);
    this._closeMedia(false);
    this._subsSent = null;
    this._store();
    this._setState("joined", { fresh });
    this._startPing();
    this._startStats();
    this._emit("joined", msg);
    this._emit("roster", this.participants);
    this._emit("room", this.room);
    if (keepTracks.size && this.role !== "observer") this._republish(keepTracks);
    this._applySubscriptions();
    this._settleJoin(null, msg);
  }

  _onResumed(msg) {
    this._attempt = 0;
    this._lapseAt = null;
    this._closeReason = null;
    // fresh TURN credentials (they expire) for the connections made from now on
    if (msg.ice_servers && this.joined) {
      this.joined = { ...this.joined, ice_servers: msg.ice_servers };
      this._store();
    }
    // the replayed messages that follow carry their own seq; `resumed` itself is the next one
    this.lastSeq = Math.max(this.lastSeq, msg.last_seq);
    this._setState("joined", { resumed: true });
    this._startPing();
    if (!this._keepMedia) {
      const keepTracks = new Map(this.local);
      this._closeMedia(false);
      this._startStats();
      if (keepTracks.size && this.role !== "observer") this._republish(keepTracks);
    }
    this._emit("joined", msg);
    this._emit("roster", this.participants);
    this._emit("room", this.room);
    this._applySubscriptions();
    this._settleJoin(null, msg);
  }

  _onLeave(msg) {
    const reason = msg.reason;
    if (reason === "timeout" || reason === "server_shutdown") return; // the socket closes; we resume
    const text = { room_closed: "本节课已结束，课堂已关闭", kicked: "已被移出课堂", replaced: "同一账号已在其他地方进入课堂",
      client_left: "已离开课堂" }[reason] || "已离开课堂";
    this._finish(reason, text);
  }

  _onMuted(msg) {
    const track = this.local.get(msg.source);
    if (track && msg.muted) track.enabled = false;
    this._emit("muted", msg);
  }

  _rosterChanged() {
    this._emit("roster", this.participants);
    this._applySubscriptions();
  }

  // ---------------------------------------------------------------- publishing

  _pc() {
    const servers = (this.joined && this.joined.ice_servers) || [];
    return new RTCPeerConnection({
      iceServers: servers.map((s) => ({ urls: s.urls, username: s.username || undefined, credential: s.credential || undefined })),
    });
  }

  _watch(pc, name) {
    let timer = null;
    const check = (waited) => {
      const current = pc === (name === "publisher" ? this.publisher : this.subscriber);
      const state = pc.connectionState;
      if (!current || !["disconnected", "failed", "closed"].includes(state)) {
        if (timer) { clearTimeout(timer); this._timers.delete(timer); timer = null; }
        return;
      }
      if (state === "disconnected" && !waited) {
        if (!timer) timer = this._later(() => { timer = null; check(true); }, DISCONNECTED_GRACE_MS);
        return;
      }
      if (this.state !== "joined") return; // the resume that follows makes new connections
      console.warn(`lesson-client: ${name} connection ${state}; making it again`);
      this._restartMedia([name], "connection_lost", "client");
    };
    pc.addEventListener("connectionstatechange", () => check(false));
  }

  /**
   * Close the `targets` ("publisher", "subscriber") peer connections and make them again, keeping the
   * local tracks. `by` "server": the server asked (`media_restart`) and has closed its side already;
   * "client": tell it first, so it closes its side before the tracks are published again.
   */
  _restartMedia(targets, reason, by) {
    targets = targets.filter((t) => (t === "publisher" ? this.publisher : this.subscriber));
    if (!targets.length && by === "client") return;
    if (by === "client") {
      this.request({ type: "media_restart", targets }).catch((e) => {
        console.warn("lesson-client: media_restart refused", e.code);
        if (e.code !== "not_connected" && e.code !== "closed") this._later(() => this._recheck(), DISCONNECTED_GRACE_MS);
      });
    }
    if (targets.includes("subscriber") && this.subscriber) {
      try { this.subscriber.close(); } catch { /* ignore */ }
      this.subscriber = null;
      for (const [key, r] of this.remote) this._emit("trackended", { participantId: r.participantId, source: r.source, mid: r.mid, key });
      this.remote.clear();
      this._mids.clear();
    }
    if (targets.includes("publisher") && this.publisher) {
      try { this.publisher.close(); } catch { /* ignore */ }
      this.publisher = null;
      this._senders.clear();
      if (this.local.size && !this.isObserver) this._republish(new Map(this.local));
    }
    this._emit("mediarestart", { targets, reason, by });
  }

  /** After a refused `media_restart`: a connection still down is rebuilt by a resume with new connections. */
  _recheck() {
    const down = (pc) => pc && ["disconnected", "failed", "closed"].includes(pc.connectionState);
    if (this.state === "joined" && (down(this.publisher) || down(this.subscriber))) {
      this._closeMedia(false);
      this.dropSocket();
    }
  }

  _queuePub(fn) {
    const run = this._pubChain.then(fn, fn);
    this._pubChain = run.catch(() => {});
    return run;
  }

  /**
   * Publish tracks `{source: MediaStreamTrack}` (camera, microphone, screen) on the publisher
   * connection: `publish` for each, then one offer. Resolves with the server's answer.
   */
  publishTracks(tracks, { simulcast = this.opts.simulcast === false ? null : CAMERA_LAYERS } = {}) {
    if (this.isObserver) return Promise.reject(new LessonError({ code: "not_allowed", message: "巡课人员不能发布音视频" }));
    for (const [source, track] of Object.entries(tracks)) {
      const old = this.local.get(source);
      if (old && old !== track) old.stop();
      this.local.set(source, track);
      this._emit("local", { source, track });
    }
    return this._queuePub(() => this._negotiatePublish(tracks, simulcast));
  }

  /** Dynacast: keep sending only the simulcast layers someone receives (`encodings[i].active`). */
  _onLayersWanted(msg) {
    this._layersWanted.set(msg.source, msg.rids);
    this._queuePub(() => this._applyLayers(msg.source)).catch((e) => {
      console.warn("lesson-client: pausing unwatched layers failed", e);
    });
  }

  async _applyLayers(source) {
    const rids = this._layersWanted.get(source);
    const t = this._senders.get(source);
    if (!rids || !t || t.currentDirection === "stopped") return;
    const params = t.sender.getParameters();
    let changed = false;
    for (const enc of params.encodings || []) {
      if (!enc.rid) continue;
      const active = rids.includes(enc.rid);
      if (enc.active !== active) { enc.active = active; changed = true; }
    }
    if (changed) await t.sender.setParameters(params);
  }

  _republish(tracks) {
    for (const [source, track] of tracks) this.local.set(source, track);
    const simulcast = this.opts.simulcast === false ? null : CAMERA_LAYERS;
    this._queuePub(() => this._negotiatePublish(Object.fromEntries(tracks), simulcast)).catch((e) => {
      console.warn("lesson-client: publishing again failed", e);
    });
  }

  async _negotiatePublish(tracks, simulcast) {
    if (!this.publisher) {
      this.publisher = this._pc();
      this._watch(this.publisher, "publisher");
    }
    const pc = this.publisher;
    const added = {};
    for (const [source, track] of Object.entries(tracks)) {
      const existing = this._senders.get(source);
      if (existing && existing.currentDirection !== "stopped") {
        await existing.sender.replaceTrack(track);
        continue;
      }
      const init = { direction: "sendonly", streams: [] };
      if (source === "camera" && simulcast) {
        init.sendEncodings = simulcast.map((l) => ({ rid: l.rid, maxBitrate: l.max_bitrate_kbps * 1000, scaleResolutionDownBy: l.scale,
                                                     scalabilityMode: CAMERA_SCALABILITY }));
      } else if (track.kind === "video") {
        init.sendEncodings = [{ maxBitrate: (source === "screen" ? SCREEN_KBPS : CAMERA_KBPS) * 1000 }];
      }
      const t = pc.addTransceiver(track, init);
      if (track.kind === "audio" && this.opts.audioRed !== false) preferRed(t);
      if (track.kind === "video" && this.opts.preferH264) preferH264(t);
      this._senders.set(source, t);
      added[source] = t;
    }
    if (!Object.keys(added).length) return null;
    await this._offerPublisher(added, simulcast);
  }

  async _offerPublisher(added = {}, simulcast = null) {
    const pc = this.publisher;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitGathering(pc);
    for (const [source, t] of Object.entries(added)) {
      const msg = { type: "publish", source, track_id: t.sender.track ? t.sender.track.id : `${source}-${t.mid}`, mid: t.mid };
      if (simulcast && source === "camera") {
        const { width = 640, height = 480 } = t.sender.track.getSettings();
        msg.simulcast = simulcast.map(({ scale, ...l }) => ({ ...l, width: Math.max(16, Math.round(width / scale)), height: Math.max(16, Math.round(height / scale)) }));
      }
      await this.request(msg);
    }
    const answer = await this.request({ type: "offer", sdp: filterSdp(pc.localDescription.sdp, this.opts.candidateFilter) });
    if (pc !== this.publisher) return answer;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    return answer;
  }

  /** getUserMedia and publish camera and/or microphone. `video`/`audio`: true or constraints. */
  async publishUserMedia({ video = true, audio = true } = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({ video, audio });
    const tracks = {};
    const v = stream.getVideoTracks()[0];
    const a = stream.getAudioTracks()[0];
    if (v) tracks.camera = v;
    if (a) tracks.microphone = a;
    if (a && this.me && (this.me.muted_by_teacher || []).includes("microphone")) a.enabled = false;
    await this.publishTracks(tracks);
    return stream;
  }

  /** Switch the camera or microphone to another device without renegotiating. */
  async switchDevice(source, deviceId) {
    const kind = source === "camera" ? "video" : "audio";
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    const track = kind === "video" ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    const old = this.local.get(source);
    if (old) track.enabled = old.enabled;
    await this.publishTracks({ [source]: track });
    return track;
  }

  /** Share the screen (getDisplayMedia); stops by itself when the user ends the sharing. */
  async publishScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail";
    track.addEventListener("ended", () => { if (this.local.get("screen") === track) this.unpublish("screen").catch(() => {}); });
    await this.publishTracks({ screen: track });
    return track;
  }

  /** Stop publishing one source: `unpublish`, then an offer without the track. */
  unpublish(source) {
    const track = this.local.get(source);
    if (track) { track.stop(); this.local.delete(source); this._emit("local", { source, track: null }); }
    return this._queuePub(async () => {
      const t = this._senders.get(source);
      this._senders.delete(source);
      await this.request({ type: "unpublish", source }).catch((e) => { if (e.code !== "not_connected") throw e; });
      if (t && this.publisher) {
        t.stop();
        await this._offerPublisher();
      }
    });
  }

  /** Mute or unmute an own track (track.enabled + `set_muted`). Refused while muted by the teacher. */
  async setMuted(source, muted) {
    const track = this.local.get(source);
    await this.request({ type: "set_muted", source, muted });
    if (track) track.enabled = !muted;
  }

  // ---------------------------------------------------------------- subscribing

  /**
   * What to receive: a list of `{participant_id, source, layer?}`, or a function
   * `(participants Map, room, client) → list` re-evaluated whenever the roster or the room changes.
   * An observer's video without a `layer` is asked for as "low".
   */
  setSubscriptions(listOrFn) {
    this._subsPolicy = listOrFn;
    this._subsSent = null;
    this._applySubscriptions();
  }

  _applySubscriptions() {
    if (!this._subsPolicy || this.state !== "joined") return;
    let subs = typeof this._subsPolicy === "function" ? this._subsPolicy(this.participants, this.room, this) : this._subsPolicy;
    subs = (subs || []).map((s) => {
      const out = { participant_id: s.participant_id, source: s.source };
      if (s.source !== "microphone") out.layer = s.layer ?? (this.isObserver ? "low" : null);
      return out;
    });
    const key = JSON.stringify(subs);
    if (key === this._subsSent) return;
    this._subsSent = key;
    this.request({ type: "update_subscriptions", subscriptions: subs }).catch((e) => {
      if (this._subsSent === key) this._subsSent = null;
      if (e.code !== "closed" && e.code !== "not_connected") this._emit("error", { code: e.code, message: e.message });
    });
  }

  _onServerOffer(msg) {
    this._subChain = this._subChain.then(() => this._answerOffer(msg)).catch((e) => {
      console.warn("lesson-client: subscriber negotiation failed", e);
    });
  }

  async _answerOffer(msg) {
    if (!this.subscriber) {
      this.subscriber = this._pc();
      this._watch(this.subscriber, "subscriber");
      this.subscriber.addEventListener("track", (ev) => this._onTrack(ev));
    }
    const pc = this.subscriber;
    const before = new Map(this._mids);
    this._mids = new Map((msg.tracks || []).map((t) => [t.mid, { participantId: t.participant_id, source: t.source }]));
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await waitGathering(pc);
    if (pc !== this.subscriber) return;
    this.send({ type: "answer", request_id: `a${++this._rid}`, sdp: filterSdp(pc.localDescription.sdp, this.opts.candidateFilter) });
    // m-lines that now carry something else, or nothing
    for (const [mid, was] of before) {
      const now = this._mids.get(mid);
      if (!now || now.participantId !== was.participantId || now.source !== was.source) {
        const key = `${was.participantId}/${was.source}`;
        if (this.remote.get(key) && this.remote.get(key).mid === mid) {
          this.remote.delete(key);
          this._emit("trackended", { participantId: was.participantId, source: was.source, mid, key });
        }
      }
    }
    // a reused transceiver fires no new `track` event: announce it from the new mapping
    for (const t of pc.getTransceivers()) {
      const m = t.mid && this._mids.get(t.mid);
      if (m && t.receiver.track && !this.remote.has(`${m.participantId}/${m.source}`)) this._announce(t.mid, t.receiver.track);
    }
  }

  _onTrack(ev) {
    const mid = ev.transceiver && ev.transceiver.mid;
    if (mid && this._mids.has(mid)) this._announce(mid, ev.track);
  }

  _announce(mid, track) {
    const { participantId, source } = this._mids.get(mid);
    const key = `${participantId}/${source}`;
    const prev = this.remote.get(key);
    if (prev && prev.track === track) return;
    const info = { participantId, source, track, stream: new MediaStream([track]), mid, key };
    this.remote.set(key, info);
    this._emit("track", info);
  }

  /** The remote track of `participantId` ("stage" for the on-stage slot) and source, if any. */
  remoteTrack(participantId, source) { return this.remote.get(`${participantId}/${source}`) || null; }

  // ---------------------------------------------------------------- classroom controls

  chat(text) { return this.request({ type: "chat", text }); }
  raiseHand(raised = true) { return this.request({ type: "raise_hand", raised }); }
  setOnStage(participantId) { return this.request({ type: "set_on_stage", participant_id: participantId }); }
  mute(participantId, source, muted) { return this.request({ type: "mute", participant_id: participantId, source, muted }); }
  muteAll(muted) { return this.request({ type: "mute_all", muted }); }

  // ---------------------------------------------------------------- link quality

  _startStats() {
    clearInterval(this._statsTimer);
    this._prevBytes = null;
    this._statsTimer = setInterval(() => this._reportStats().catch(() => {}), LINK_REPORT_MS);
    this.playout.start();
  }

  /** Own link from getStats: loss, rtt, jitter and bitrate of both connections; sent as `link_quality`. */
  async linkStats() {
    let lost = 0, received = 0, jitter = 0, rtt = 0, bytes = 0;
    for (const pc of [this.subscriber, this.publisher]) {
      if (!pc) continue;
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === "inbound-rtp") {
          lost += Math.max(0, s.packetsLost || 0);
          received += s.packetsReceived || 0;
          jitter = Math.max(jitter, (s.jitter || 0) * 1000);
          bytes += s.bytesReceived || 0;
        } else if (s.type === "outbound-rtp") {
          bytes += s.bytesSent || 0;
        } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
          rtt = Math.max(rtt, s.currentRoundTripTime * 1000);
        } else if (s.type === "remote-inbound-rtp" && s.roundTripTime !== undefined) {
          rtt = Math.max(rtt, s.roundTripTime * 1000);
        }
      });
    }
    const now = performance.now();
    let kbps = 0;
    if (this._prevBytes) kbps = Math.max(0, ((bytes - this._prevBytes.bytes) * 8) / Math.max(1, now - this._prevBytes.at));
    this._prevBytes = { bytes, at: now };
    const loss = received + lost > 0 ? lost / (received + lost) : 0;
    const out = { loss: Math.min(1, loss), rtt_ms: Math.round(rtt), jitter_ms: Math.round(jitter), bitrate_kbps: Math.round(kbps) };
    out.quality = qualityOf(out);
    return out;
  }

  async _reportStats() {
    if (this.state !== "joined" || (!this.publisher && !this.subscriber)) return;
    const s = await this.linkStats();
    this._emit("localquality", s);
    if (!this.isObserver) {
      const { quality, ...report } = s;
      this.send({ type: "link_quality", ...report });
    }
  }
}
