// 录播 (replay) and 资源库 (resource library).
//
// /replay/          the library: recordings the user may see, filtered by subject, grade, teacher,
//                   school, dates and title (GET /recordings, /recordings/facets).
// /replay/?id=N     the player: the lesson's files (GET /recordings/N) on one time axis. A lesson recorded
//                   across a server restart has several recordings: the answer puts all their files on
//                   the lesson's axis and lists the gaps between them, which the player shows as such.
//
// A recording keeps each track in its own file (teacher camera, shared screen, microphone; a new
// file when a track was published again), each with its offset `start_s` on the recording's axis.
// The player runs one clock and keeps a <video>/<audio> element per source on it: the element of
// the file that covers the clock's time plays at `t - start_s`, the others wait. Seeking sets the
// clock. Files come from short-lived signed URLs (a <video> cannot send the bearer header) and
// are served with HTTP ranges, so the browser seeks without downloading everything.
//
// A famous-school recording keeps its lesson's stream (LL-HLS, ended): a segment of the lesson whose
// answer has a `stream` plays from it instead of its files (./stream.js): the camera with the sound from
// main.m3u8 in the camera's <video>, the screen from screen.m3u8, each placed through the program date
// time of its segments (the lesson's time t is the stream's instant `program_date_time + t - offset_s`),
// and the screen follows the camera's instant as the live stream's does (followRate). A segment
// without a stream plays its files.
import { api, ApiError, el, fill, fmtDate, fmtTime, KIND_LABEL, mountHeader, requireLogin, showError, toast }
  from "/assets/api.js";
import { label } from "/assets/icons.js";
import { followRate } from "/lesson/stream.js";
import { EvaluationPanel } from "/patrol/evaluation.js";
import { Board } from "/lesson/annotation.js";
import { RecordedStream } from "/replay/stream.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const DRIFT_S = 0.35;
const GAP_HOLD_S = 1.5;

function hms(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${two(m)}:${two(r)}`;
}

function size(bytes) {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

// ------------------------------------------------------------------ library

const lib = { offset: 0, filters: {} };

async function loadFacets() {
  const f = await api("/recordings/facets");
  const options = (select, items, label) => {
    const keep = select.value;
    fill(select, el("option", { value: "" }, label),
      items.map((x) => (typeof x === "string" ? el("option", { value: x }, x) : el("option", { value: x.id }, x.name))));
    select.value = keep;
  };
  options($("f-subject"), f.subjects, "全部学科");
  options($("f-grade"), f.grades, "全部年级");
  options($("f-teacher"), f.teachers, "全部教师");
  options($("f-school"), f.schools, "全部学校");
}

function row(r) {
  return el("tr", { dataset: { id: r.id } },
    el("td", { class: "nowrap" }, fmtDate(r.starts_at), " ", fmtTime(r.starts_at)),
    el("td", {}, r.title),
    el("td", {}, KIND_LABEL[r.kind] || r.kind),
    el("td", {}, `${r.subject} / ${r.grade}`),
    el("td", {}, r.teacher_name),
    el("td", {}, r.school_name),
    el("td", { class: "nowrap" }, hms(r.duration_s)),
    el("td", { class: "nowrap" }, size(r.size_bytes)),
    el("td", { class: "actions" }, el("a", { class: "btn btn-primary", href: `/replay/?id=${r.id}` }, "回放")));
}

async function loadLibrary(append = false) {
  if (!append) lib.offset = 0;
  const page = await api("/recordings", { query: { ...lib.filters, limit: PAGE, offset: lib.offset } });
  const body = $("library").tBodies[0];
  if (!append) body.replaceChildren();
  page.data.forEach((r) => body.appendChild(row(r)));
  const filtered = Object.values(lib.filters).some((v) => v !== "");
  if (!page.count) {
    body.appendChild(el("tr", {}, el("td", { colspan: 9, class: "empty" }, filtered ? "没有符合条件的录播"
      : "还没有可回看的录播：名校网络课堂和开启录制的课程，下课后可在这里回看")));
  }
  lib.offset += page.data.length;
  $("count").textContent = `共 ${page.count} 节`;
  $("more").hidden = lib.offset >= page.count;
}

async function library() {
  $("library-view").hidden = false;
  document.title = "录播资源库 · 三课";
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    lib.filters = Object.fromEntries(new FormData(e.target).entries());
    loadLibrary().catch(showError);
  });
  $("more").addEventListener("click", () => loadLibrary(true).catch(showError));
  await Promise.all([loadFacets(), loadLibrary()]);
}

// ------------------------------------------------------------------ player

const player = {
  rec: null,
  duration: 0,
  playing: false,
  base: 0,          // clock time at `since`
  since: 0,         // performance.now() when the clock last (re)started
  rate: 1,
  tracks: [],       // [{source, element, segments: [{url, start_s, duration_s, stream?}], current, stream}]
  timer: null,
  seeking: false,
  started: false,   // play was pressed once (until then the poster asks for it)
  failed: new Set(), // recordings whose stream failed here (their files play)
};

function clock() {
  if (!player.playing) return player.base;
  return Math.min(player.duration, player.base + ((performance.now() - player.since) / 1000) * player.rate);
}

function setClock(t, playing = player.playing) {
  player.base = Math.max(0, Math.min(player.duration, t));
  player.since = performance.now();
  player.playing = playing;
}

function segmentAt(track, t) {
  return track.segments.find((s) => t >= s.start_s && t < s.start_s + s.duration_s) || null;
}

/**
 * What a track shows at `t`: the file that covers it; for the teacher's camera also the first picture of
 * the next file, held, when that file starts within GAP_HOLD_S (the camera starts a little after the sound,
 * at its first keyframe; a republish leaves a short gap) or, before play was ever pressed, whenever the first
 * file starts (the poster). Otherwise nothing: only then is the gap shown ("此时段无教师画面").
 */
function shownAt(track, t) {
  const seg = segmentAt(track, t);
  if (seg || track.source !== "camera") return { seg, held: false };
  const next = track.segments.find((s) => s.start_s > t);
  if (next && (next.start_s - t <= GAP_HOLD_S || (!player.started && next === track.segments[0]))) {
    return { seg: next, held: true };
  }
  return { seg: null, held: false };
}

/**
 * The tracks of the lesson, per source: the stream of each recording that keeps one (and has not failed
 * here) and the files of the others. Made again when a stream fails: that recording's files take its place.
 */
function buildTracks() {
  const rec = player.rec;
  const elements = { camera: $("v-camera"), screen: $("v-screen"), microphone: $("a-microphone") };
  const streamed = rec.segments.filter((s) => s.stream && !player.failed.has(s.id));
  const own = new Set(streamed.map((s) => s.id));
  for (const source of Object.keys(elements)) {
    const segments = rec.files.filter((f) => f.source === source && !own.has(f.recording_id))
      .map((f) => ({ url: f.url, start_s: f.start_s, duration_s: f.duration_s }));
    for (const s of streamed) {
      const url = { camera: s.stream.main_url, screen: s.stream.screen_url }[source];
      if (url) segments.push({ url, start_s: s.offset_s, duration_s: s.duration_s, stream: s.stream });
    }
    segments.sort((a, b) => a.start_s - b.start_s);
    let track = player.tracks.find((x) => x.source === source);
    if (track) {
      const keep = track.current && segments.find((x) => x.url === track.current.url);
      track.segments = segments;
      if (keep) track.current = keep;
      else unload(track);
    } else if (segments.length) {
      track = { source, element: elements[source], segments, current: null, stream: null };
      player.tracks.push(track);
      track.element.addEventListener("error", () => {
        if (track.element.error) console.warn("replay: cannot play", track.source, track.element.error.message);
      });
      track.element.addEventListener("loadedmetadata", () => sync(true));
    }
  }
  const hasScreen = player.tracks.some((t) => t.source === "screen" && t.segments.length);
  $("fig-screen").hidden = !hasScreen;
  document.querySelector(".replay-views").classList.toggle("no-screen", !hasScreen);
}

/** Play `seg` in the track's element: a file as its src, a stream through hls.js (or the browser's HLS). */
function load(track, seg) {
  unload(track);
  track.current = seg;
  if (seg.stream) {
    if (track.source === "screen") track.element.muted = true;  // the sound comes with the camera
    track.stream = new RecordedStream(track.element, seg.url, () => sync(true), () => streamFailed(seg.stream));
  } else {
    track.element.src = seg.url;
  }
}

function unload(track) {
  if (track.stream) track.stream.destroy();
  track.stream = null;
  track.current = null;
}

/** A recording's stream cannot be played here: its files instead. */
function streamFailed(stream) {
  const seg = player.rec.segments.find((s) => s.stream === stream);
  if (!seg || player.failed.has(seg.id)) return;
  console.warn("replay: the stream of recording", seg.id, "failed; playing its files");
  player.failed.add(seg.id);
  buildTracks();
  sync(true);
}

/**
 * Where in a stream segment the track's element shows the clock's time `t`: {at, held} (held: the camera's
 * next picture, still, as for files), or null when the source shows nothing then (or the stream's segment
 * times are not known yet: `wait`).
 */
function streamAt(track, seg, t) {
  if (!track.stream || !track.stream.ready) return { wait: true };
  const pos = track.stream.mediaAt(seg.stream.program_date_time + t - seg.start_s);
  if (pos && pos.inside) return { at: pos.time, held: false };
  if (pos && track.source === "camera" && (pos.wait <= GAP_HOLD_S || !player.started)) return { at: pos.time, held: true };
  return null;
}

/** The playbackRate of the screen's element: the clock's, or, when the screen and the camera play the same
 *  stream, the one that keeps the screen on the camera's instant (program date time). */
function screenRate(track) {
  const cam = player.tracks.find((x) => x.source === "camera");
  if (track.source !== "screen" || !cam || !track.stream || !cam.stream || !cam.current
      || cam.current.stream !== track.current.stream
      || cam.element.paused || track.element.paused) return player.rate;
  const c = cam.stream.wallAt(cam.element.currentTime), s = track.stream.wallAt(track.element.currentTime);
  if (c === null || s === null) return player.rate;
  const rate = followRate((s - c) * 1000, player.rate);
  if (rate === null) {
    track.element.currentTime -= s - c;
    return player.rate;
  }
  return rate;
}

/** Bring every element in line with the clock (which file or stream, where in it, playing or not). */
function sync(force = false) {
  const t = clock();
  for (const track of player.tracks) {
    let { seg, held } = shownAt(track, t);
    const media = track.element;
    if (seg && track.current !== seg) {
      load(track, seg);
      force = true;
    }
    let want = held ? 0 : t - (seg ? seg.start_s : 0);
    if (seg && seg.stream) {
      const pos = streamAt(track, seg, t);
      if (pos && pos.wait) continue;  // positioned once the stream's segment times are known
      if (pos) ({ at: want, held } = pos);
      else seg = null;
    }
    const off = $(`off-${track.source}`);
    if (off) off.hidden = Boolean(seg);
    if (!seg) {
      if (!media.paused) media.pause();
      continue;
    }
    if (held) {  // the next file's (or stream segment's) first picture, still, until the clock gets there
      if (!media.paused) media.pause();
      if (force || Math.abs(media.currentTime - want) > DRIFT_S) {
        try { media.currentTime = want; } catch { /* before metadata: set again on the next tick */ }
      }
      continue;
    }
    if (force || Math.abs(media.currentTime - want) > DRIFT_S) {
      try { media.currentTime = want; } catch { /* before metadata: set again on the next tick */ }
    }
    const rate = screenRate(track);
    if (media.playbackRate !== rate) media.playbackRate = rate;
    if (player.playing && media.paused) media.play().catch(() => { /* the next tick tries again */ });
    if (!player.playing && !media.paused) media.pause();
  }
  if (!player.seeking) $("seek").value = String(t);
  $("now").textContent = hms(t);
  if (player.playing && t >= player.duration) pause();
}

function play() {
  player.started = true;
  $("poster").hidden = true;
  if (clock() >= player.duration - 0.1) setClock(0);
  setClock(clock(), true);
  label($("play"), "pause", "暂停");
  $("play").setAttribute("aria-label", "暂停");
  sync(true);
}

function pause() {
  setClock(clock(), false);
  label($("play"), "play", "播放");
  $("play").setAttribute("aria-label", "播放");
  sync();
}

function seek(t) {
  setClock(t);
  sync(true);
}

async function compose(rid) {
  const show = (job) => {
    $("compose-progress").hidden = !["queued", "running"].includes(job.status);
    $("compose-progress").value = job.progress;
    $("compose-status").textContent = job.status === "running"
      ? `${job.status_label} ${Math.round(job.progress * 100)}%` : (job.error ? `${job.status_label}：${job.error}` : job.status_label);
    $("download").hidden = job.status !== "done";
    if (job.url) $("download").href = job.url;
    $("compose").disabled = ["queued", "running"].includes(job.status);
    return job;
  };
  let job = show(await api(`/recordings/${rid}/compose`, { method: "POST" }));
  while (["queued", "running"].includes(job.status)) {
    await new Promise((r) => setTimeout(r, 1000));
    job = show(await api(`/recordings/${rid}/compose`));
  }
  if (job.status === "done") toast("MP4 已合成，可以下载", "ok");
}

async function replay(rid) {
  $("player-view").hidden = false;
  const rec = await api(`/recordings/${rid}`);
  player.rec = rec;
  document.title = `${rec.title} · 录播回放 · 三课`;
  $("title").textContent = rec.title;
  $("meta").textContent = `${fmtDate(rec.starts_at)} ${fmtTime(rec.starts_at)} · ${rec.school_name} · ${rec.teacher_name} · `
    + `${KIND_LABEL[rec.kind] || rec.kind} · ${rec.subject} ${rec.grade}`;
  if (rec.status !== "ready" && rec.status !== "partial") {
    $("player-error").hidden = false;
    $("player-error").textContent = `该录播${rec.status_label}${rec.error ? "：" + rec.error : ""}，无法回放`;
    return;
  }
  player.duration = rec.duration_s;
  $("total").textContent = hms(rec.duration_s);
  $("seek").max = String(rec.duration_s);
  buildTracks();
  $("play").addEventListener("click", () => (player.playing ? pause() : play()));
  const seekInput = $("seek");
  seekInput.addEventListener("input", () => { player.seeking = true; $("now").textContent = hms(Number(seekInput.value)); });
  seekInput.addEventListener("change", () => { player.seeking = false; seek(Number(seekInput.value)); });
  $("rate").addEventListener("change", (e) => { setClock(clock()); player.rate = Number(e.target.value); sync(true); });
  $("compose").addEventListener("click", () => compose(rid).catch(showError));
  if (rec.compose.status === "done") {
    $("download").hidden = false;
    $("download").href = rec.compose.url;
    $("compose-status").textContent = "已合成";
  } else if (["queued", "running"].includes(rec.compose.status)) {
    compose(rid).catch(showError);
  }
  if (rec.gaps.length) {
    $("gaps").hidden = false;
    $("gaps").textContent = "服务器中断，以下时段没有录像：" + rec.gaps.map((g) => `${hms(g.start_s)}–${hms(g.end_s)}`).join("，");
  }
  if (rec.expires_on) $("expires").textContent = `按保存期限，本录播将于 ${fmtDate(rec.expires_on, { year: true })} 删除。`;
  $("poster").hidden = false;
  $("poster").addEventListener("click", play);
  drawAnnotations(rec);
  player.timer = setInterval(sync, 250);
  sync(true);
  window.sankeReplay = { play, pause, seek, clock: () => clock(), tracks: player.tracks };
  offerEvaluation(rec).catch(showError);
}

// ------------------------------------------------------------------ 评课 on the recording

/**
 * A researcher of the lesson's region, or anyone invited to evaluate it, may evaluate it here (mode
 * "replay"): the panel opens beside the player and a note is placed at the player's current time.
 * A teacher asks only when invited (the lesson's own teacher never evaluates it).
 */
async function mayEvaluate(rec) {
  if (user.role === "teacher") {
    const mine = await api("/patrol/invitations");
    return mine.some((i) => i.instance_id === rec.instance_id);
  }
  if (user.role !== "researcher") return false;
  try {
    await api(`/patrol/lessons/${rec.instance_id}/evaluation`);
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return false;
    throw e;
  }
}

async function offerEvaluation(rec) {
  if (!(await mayEvaluate(rec))) return;
  const panel = new EvaluationPanel({ mode: "replay", offset: () => clock() });
  const btn = $("btn-evaluate");
  btn.hidden = false;
  const toggle = async (open) => {
    $("eval-panel").hidden = !open;
    $("replay-layout").classList.toggle("with-eval", open);
    btn.setAttribute("aria-pressed", String(open));
    if (open && panel.lessonId === null) await panel.open(rec.instance_id);
  };
  btn.addEventListener("click", () => toggle($("eval-panel").hidden).catch(showError));
  $("note-list").addEventListener("click", (e) => {
    const li = e.target.closest("li[data-offset]");
    if (li && li.dataset.offset !== "") seek(Number(li.dataset.offset));
  });
  window.sankeReplay.evaluation = panel;
  if (new URLSearchParams(location.search).get("evaluate") === "1") await toggle(true);
}

// ------------------------------------------------------------------ start

const user = requireLogin(["admin", "teacher", "researcher", "student"]);
if (user) {
  const params = new URLSearchParams(location.search);
  // embed=1: a pane of another page (教研活动 side by side): no header, no way back to the library
  if (params.get("embed") === "1") {
    document.body.classList.add("embed");
    $("app-header").remove();
  } else {
    mountHeader(user);
  }
  const rid = params.get("id");
  (rid ? replay(Number(rid)) : library()).catch(showError);
}

// ------------------------------------------------------------------ 同屏批注 over the replayed screen

/** The teacher's strokes over the screen as they were at the clock's time (the changes up to it). */
function drawAnnotations(rec) {
  const changes = rec.annotations || [];
  const board = new Board($("v-screen"));
  window.sankeBoard = board; // for the browser tests
  let shown = -1;
  const at = () => {
    const t = clock();
    let n = 0;
    while (n < changes.length && changes[n].t <= t) n++;
    if (n === shown) return;
    shown = n;
    let strokes = [];
    for (const c of changes.slice(0, n)) {
      if (c.action === "stroke") strokes.push(c.stroke);
      else if (c.action === "undo") strokes = strokes.filter((s) => s.id !== c.stroke.id);
      else if (c.action === "clear") strokes = [];
    }
    board.set(strokes);
  };
  at();
  setInterval(at, 100);
}
