// A famous-school lesson's live stream (LL-HLS) on the home student's page: the camera with the
// classroom's sound (main.m3u8) and the shared screen (screen.m3u8) in the page's two <video>
// elements, on one clock. hls.js plays them where the browser has Media Source Extensions; a browser
// without them that plays HLS itself (iOS Safari on an iPhone) gets the playlist as the <video>'s src.
//
// The files are served under a signed path prefix that expires (POST /lessons/{id}/hls-link): the
// prefix is asked for again at its `renew_at`, and every later request of the players goes to the new
// prefix (hls.js's loader rewrites the URL), so playback does not stop. A natively played stream
// cannot be rewritten: it is re-opened at the new prefix.
//
// One clock: each rendition's parts carry EXT-X-PROGRAM-DATE-TIME, so each <video>'s position is a
// wall-clock instant (hls.playingDate). The camera leads; the screen follows it: beyond SEEK_MS it is
// moved there, beyond NUDGE_MS it plays a little faster or slower until it is within NUDGE_MS again.
// Nothing here touches the lesson socket: listener.js decides when the stream plays.
import Hls from "/vendor/hls.min.js";
import { api } from "/assets/api.js";
import { askForSound } from "/lesson/common.js";

const NUDGE_MS = 20;    // screen within this of the camera: normal speed
const SEEK_MS = 1000;   // further than this: seek instead of nudging
const MAX_NUDGE = 0.25; // playbackRate within 1 ± this
const OPEN_TIMEOUT_MS = 8000; // main.m3u8 and its first part must come within this
const PREFIX_RE = /\/hls\/\d+\/\d+\/[^/]+\//; // /hls/<lesson>/<expires>/<sig>/, on SanKe or on the origin of SANKE_HLS_BASE_URL

/** Whether this browser can play the stream at all (hls.js over MSE, or its own HLS). */
export function streamSupported() {
  return Hls.isSupported() || !!document.createElement("video").canPlayType("application/vnd.apple.mpegurl");
}

export class LessonStream {
  /**
   * @param {number} lessonId
   * @param {{camera: HTMLVideoElement, screen: HTMLVideoElement, onEnd: (why: string) => void,
   *          onScreen: (playing: boolean) => void}} opts
   *   onEnd("ended" | "failed"): the stream stopped by itself (its playlist ended, or it failed);
   *   onScreen: the screen's picture started or stopped.
   */
  constructor(lessonId, opts) {
    this.lessonId = lessonId;
    this.opts = opts;
    this.link = null;
    this.players = { camera: null, screen: null };
    this.native = !Hls.isSupported();
    this.screenWanted = false;
    this.screenPlaying = false;
    this.running = false;
    this.stopped = false; // stop() called: a start() still under way gives up
    this.renewTimer = null;
    this.syncTimer = null;
    this.renewals = 0;
    this.nudges = 0;
    this.seeks = 0;
  }

  /** Ask for the signed prefix and open main.m3u8; resolves true once the camera plays, false if the
   *  stream is not there (no link, not started, ended, or not loading within OPEN_TIMEOUT_MS). */
  async start() {
    try {
      this.link = await api(`/lessons/${this.lessonId}/hls-link`, { method: "POST" });
    } catch { return false; }
    if (!this.link.started || this.stopped) return false;
    this.running = true;
    this.scheduleRenewal();
    const ok = await this.open("camera", this.link.main_url);
    if (!ok || this.stopped) { this.stop(); return false; }
    this.syncTimer = setInterval(() => this.syncScreen(), 250);
    if (this.screenWanted) this.setScreen(true);
    return true;
  }

  stop() {
    this.running = false;
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearInterval(this.syncTimer);
    for (const which of ["camera", "screen"]) this.close(which);
  }

  /** The main classroom shares its screen (from the roster) or stops: open or close screen.m3u8. */
  setScreen(wanted) {
    this.screenWanted = wanted;
    if (!this.running) return;
    if (wanted && !this.players.screen) this.openScreen();
    if (!wanted && this.players.screen) this.close("screen");
  }

  async openScreen() {
    // the egress may write the screen's first part a moment after the roster says it is shared
    for (let attempt = 0; this.running && this.screenWanted && !this.players.screen; attempt++) {
      if (await this.open("screen", this.link.screen_url)) return;
      await new Promise((r) => setTimeout(r, Math.min(4000, 500 * (attempt + 1))));
    }
  }

  /** The signed URL of `url` under the current prefix (a URL of an older prefix is moved to it). */
  signed(url) {
    if (!this.link) return url;
    return url.replace(PREFIX_RE, this.link.prefix);
  }

  open(which, url) {
    const video = this.opts[which];
    video.srcObject = null;
    // the camera carries the classroom's sound; the screen stays muted
    video.muted = which === "screen";
    return new Promise((resolve) => {
      let settled = false;
      const done = (ok) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        video.removeEventListener("playing", onPlaying);
        if (!ok) this.close(which);
        resolve(ok);
      };
      const onPlaying = () => {
        if (which === "screen") { this.screenPlaying = true; this.opts.onScreen(true); }
        done(true);
      };
      const timer = setTimeout(() => done(false), OPEN_TIMEOUT_MS);
      video.addEventListener("playing", onPlaying);
      if (this.native) {
        video.src = url;
        video.addEventListener("error", () => { if (settled) this.failed("failed"); else done(false); }, { once: true });
        video.addEventListener("ended", () => this.failed("ended"), { once: true });
        this.players[which] = { native: true };
      } else {
        const hls = new Hls(this.hlsConfig());
        this.players[which] = hls;
        hls.on(Hls.Events.ERROR, (_e, data) => {
          if (!data.fatal) return;
          if (!settled) done(false);
          else if (which === "camera") this.failed("failed");
          else this.close("screen"); // the screen alone: try it again if it is still shared
        });
        hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
          if (data.details && !data.details.live && settled && which === "camera") this.failed("ended");
          if (data.details && !data.details.live && !settled) done(false); // a stream that is over already
        });
        hls.loadSource(url);
        hls.attachMedia(video);
      }
      this.play(video);
    });
  }

  hlsConfig() {
    const stream = this;
    const Base = Hls.DefaultConfig.loader;
    // every request under the prefix goes to the current one (a renewed link swaps in here)
    class SignedLoader extends Base {
      load(context, config, callbacks) {
        context.url = stream.signed(context.url);
        super.load(context, config, callbacks);
      }
    }
    // maxLiveSyncPlaybackRate: after a late start or a stall, play up to 1.5x fast back to the target latency
    // (at hls.js's default of 1 a page opened as the stream begins stays ~3 s behind for good)
    return { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, enableWorker: false, backBufferLength: 30, loader: SignedLoader };
  }

  play(video) {
    video.play().catch(() => {
      // sound blocked until the first tap: play muted, and the page's 「点击开启声音」 unmutes it
      if (!video.muted) { video.muted = true; video.dataset.sound = "1"; video.play().catch(() => {}); askForSound(); }
    });
  }

  close(which) {
    const p = this.players[which];
    this.players[which] = null;
    const video = this.opts[which];
    if (p && !p.native) p.destroy();
    if (p) { video.removeAttribute("src"); video.load(); video.muted = true; delete video.dataset.sound; }
    if (which === "screen" && this.screenPlaying) {
      this.screenPlaying = false;
      this.opts.onScreen(false);
      if (this.running && this.screenWanted) this.openScreen();
    }
  }

  failed(why) {
    if (!this.running) return;
    this.stop();
    this.opts.onEnd(why);
  }

  scheduleRenewal() {
    clearTimeout(this.renewTimer);
    const l = this.link;
    // at renew_at by this device's clock, but never sooner than 30 s nor later than the link's second half
    const wait = Math.max(30000, Math.min(l.renew_at * 1000 - Date.now(), (l.expires_at - l.renew_at) * 1000));
    this.renewAt = Date.now() + wait;
    this.renewTimer = setTimeout(() => this.renew(), wait);
  }

  /** A fresh prefix, swapped in without stopping playback (natively played: re-opened there). */
  async renew() {
    if (!this.running) return;
    try {
      this.link = await api(`/lessons/${this.lessonId}/hls-link`, { method: "POST" });
      this.renewals++;
    } catch {
      this.renewTimer = setTimeout(() => this.renew(), 10000); // the old prefix still has a while
      return;
    }
    if (this.native) {
      for (const which of ["camera", "screen"]) {
        const video = this.opts[which];
        if (!this.players[which]) continue;
        const at = video.currentTime;
        video.src = this.signed(video.currentSrc || video.src);
        video.currentTime = at;
        this.play(video);
      }
    }
    this.scheduleRenewal();
  }

  /** The wall-clock instant (ms) the <video> of `which` shows now, or null. */
  playingDate(which) {
    const p = this.players[which];
    const video = this.opts[which];
    if (!p) return null;
    if (p.native) {
      const start = video.getStartDate ? video.getStartDate().getTime() : NaN;
      return Number.isFinite(start) ? start + video.currentTime * 1000 : null;
    }
    const d = p.playingDate;
    return d ? d.getTime() : null;
  }

  /** Keep the screen on the camera's clock. */
  syncScreen() {
    const screen = this.opts.screen;
    const cam = this.playingDate("camera");
    const scr = this.playingDate("screen");
    if (cam === null || scr === null || screen.paused || this.opts.camera.paused) return;
    const ahead = scr - cam; // ms the screen is ahead of the camera
    const rate = followRate(ahead);
    if (rate === null) {
      screen.currentTime -= ahead / 1000;
      screen.playbackRate = 1;
      this.seeks++;
    } else {
      if (rate !== 1) this.nudges++;
      if (screen.playbackRate !== rate) screen.playbackRate = rate;
    }
  }
}

/**
 * The playbackRate of a <video> that follows another playing at `rate`, `aheadMs` ahead of it: `rate`
 * within NUDGE_MS, else a little slower or faster so the difference is made up in about a second; null
 * beyond SEEK_MS (move it instead). The live stream's screen follows its camera so; so does the replay's.
 */
export function followRate(aheadMs, rate = 1) {
  if (Math.abs(aheadMs) > SEEK_MS) return null;
  if (Math.abs(aheadMs) <= NUDGE_MS) return rate;
  return rate * (1 - Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, aheadMs / 1000)));
}

const HOLD_MS = 20000; // the home-student count moves the page between modes at most this often

/**
 * The series' `stream_from` applied to the lesson's home-student count: null → never the stream;
 * 0 → always; N → while more than N home students are in. With hysteresis: once on the stream, the
 * page stays there until the count falls to N - max(1, N/10), and it changes its mind at most every
 * HOLD_MS, so students coming and going around N do not flip everyone's page back and forth.
 */
export class StreamPolicy {
  constructor(streamFrom) {
    this.streamFrom = streamFrom ?? null;
    this.on = this.streamFrom === 0;
    this.changedAt = -Infinity;
  }

  wants(homeStudents, now = Date.now()) {
    const n = this.streamFrom;
    if (n === null || n === 0) return this.on;
    const band = Math.max(1, Math.round(n / 10));
    const next = this.on ? homeStudents > n - band : homeStudents > n;
    if (next !== this.on && now - this.changedAt >= HOLD_MS) {
      this.on = next;
      this.changedAt = now;
    }
    return this.on;
  }
}
