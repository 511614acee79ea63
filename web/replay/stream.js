// The stream a famous-school recording keeps (its lesson's LL-HLS stream, ended: every segment, ENDLIST),
// played in one <video> of the replay page: main.m3u8 (camera + sound) or screen.m3u8 (the shared
// screen, muted). hls.js (the vendored one) plays it where the browser has Media Source Extensions; a
// browser without them that plays HLS itself gets the playlist as the <video>'s src.
//
// The replay page's clock is the lesson's time; the stream's is the program date time of its segments
// (EXT-X-PROGRAM-DATE-TIME, one clock for camera, screen and sound). `mediaAt(wall)` turns an instant
// of the stream's clock into a position of the <video> through the segments themselves, so a
// discontinuity (the publisher reconnected, a worker restarted: time away that is in the program date
// time and not in the media) lands each rendition on its own right frame; `wallAt(time)` goes back.
import Hls from "/vendor/hls.min.js";

const FIRST_PICTURE_S = 0.005; // less than any frame lasts

export class RecordedStream {
  /**
   * @param {HTMLVideoElement} video
   * @param {string} url the signed URL of main.m3u8 or screen.m3u8
   * @param {() => void} onReady called once the segments' times are known (the page positions the video)
   * @param {() => void} onFail called once if the stream cannot be played (the page plays the files instead)
   */
  constructor(video, url, onReady, onFail) {
    this.video = video;
    this.url = url;
    this.native = !Hls.isSupported();
    this.fragments = null; // hls.js's segments of the playing level (start, duration, programDateTime)
    this.nativeFrags = null;
    this.hls = null;
    this.failed = false;
    const fail = () => {
      if (this.failed) return;
      this.failed = true;
      onFail();
    };
    if (this.native) {
      video.src = url;
      video.addEventListener("error", fail, { once: true });
      video.addEventListener("loadedmetadata", () => {
        const start = video.getStartDate ? video.getStartDate().getTime() : NaN;
        if (!Number.isFinite(start) || !Number.isFinite(video.duration)) return;
        this.nativeFrags = [{ start: 0, end: video.duration, pdt: start / 1000, pdtEnd: start / 1000 + video.duration }];
        onReady();
      }, { once: true });
      return;
    }
    const hls = new Hls({ enableWorker: false, backBufferLength: 30 });
    this.hls = hls;
    hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
      const fragments = (data.details && data.details.fragments) || [];
      if (!fragments.some((f) => Number.isFinite(f.programDateTime))) return;
      const first = this.fragments === null;
      this.fragments = fragments;  // hls.js corrects their starts to the media's own times as it parses them
      if (first) onReady();
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      console.warn("replay: the stream failed", url, data.details);
      fail();
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  get ready() {
    return this.nativeFrags !== null || this.fragments !== null;
  }

  /** [{start, end, pdt, pdtEnd}] in seconds, in media order, or null before they are known. */
  get frags() {
    if (this.nativeFrags || !this.fragments) return this.nativeFrags;
    return this.fragments.filter((f) => Number.isFinite(f.programDateTime))
      .map((f) => ({ start: f.start, end: f.start + f.duration, pdt: f.programDateTime / 1000,
                     pdtEnd: f.programDateTime / 1000 + f.duration }));
  }

  /**
   * Where the video shows the stream's instant `wall` (Unix seconds): {time, inside: true} inside a
   * segment; {time, inside: false, wait} before one (`time` shows its first picture, `wait` seconds until
   * it), or null after the last one.
   */
  mediaAt(wall) {
    const frags = this.frags;
    if (!frags) return null;
    for (const f of frags) {
      // its first picture: a hair after its start (at the start itself, the end of the segment before shows)
      if (wall < f.pdt) return { time: f.start + FIRST_PICTURE_S, inside: false, wait: f.pdt - wall };
      if (wall < f.pdtEnd) return { time: f.start + (wall - f.pdt), inside: true, wait: 0 };
    }
    return null;
  }

  /** The stream's instant (Unix seconds) the video shows at `time`, or null. */
  wallAt(time) {
    const frags = this.frags;
    if (!frags || !frags.length) return null;
    const f = frags.find((x) => time >= x.start && time < x.end) || frags[frags.length - 1];
    return time >= f.start && time <= f.end + 0.1 ? f.pdt + (time - f.start) : null;
  }

  destroy() {
    this.failed = true; // (nothing of it is reported any more)
    if (this.hls) this.hls.destroy();
    this.video.removeAttribute("src");
    this.video.load();
  }
}
