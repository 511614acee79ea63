// The receiving side of a lesson, shared by the receiving-classroom kiosk (receiving.js) and the
// home student's page (student.js): teacher video and shared screen large, the on-stage slot,
// raise hand, chat, link quality; joins by itself when the room opens and after a drop or reload.
//
// A home student of a famous-school lesson (名校网络课堂) who is not on stage may watch the lesson's
// live stream instead (stream.js; "直播流"), as the series' `stream_from` says for the number of home
// students in the lesson: the page then receives no WebRTC media, and keeps the lesson socket for
// chat, raise hand, the roster and the stage. Brought on stage, it goes back to WebRTC ("实时互动")
// and publishes; a stream that is not there, ends or fails leaves it on WebRTC (tried again later).
import { api, ApiError, requireLogin, mountHeader, showError, toast, todayISO, fmtRange, KIND_LABEL, seatIn, lessonPageFor } from "/assets/api.js";
import { LessonClient } from "/assets/lesson-client.js";
import { quizAnswerPanel } from "/lesson/quiz.js";
import { Board } from "/lesson/annotation.js";
import { label } from "/assets/icons.js";
import { el, fill, qualityDot, setQuality, showVideo, playAudio, stopAudio, renderBanner, mediaErrorText, chatPanel, fmtDuration, wall } from "/lesson/common.js";

const $ = (id) => document.getElementById(id);

/**
 * @param {{kind: "receiving" | "student", roles: string[], title: string}} cfg
 *   receiving: finds the classroom's next lesson itself and always publishes camera + microphone;
 *   student: the lesson of `?lesson=ID`, publishes only while on stage.
 */
export function runListener(cfg) {
  const user = requireLogin(cfg.roles);
  if (!user) return;
  mountHeader(user, { title: cfg.title });
  const page = new ListenerPage(user, cfg);
  page.findLesson();
}

class ListenerPage {
  constructor(user, cfg) {
    this.user = user;
    this.cfg = cfg;
    this.lesson = null;
    this.lc = null;
    this.publishing = false;
    this.ended = false; // the lesson is over (room closed, held, missed, cancelled): no countdown any more
    this.mode = "webrtc"; // how a home student watches: "webrtc", or "stream" (LL-HLS, stream.js)
    this.stream = null;   // the LessonStream while the stream plays
    this.policy = null;   // the series' StreamPolicy, for a famous-school lesson's home student
    this.streamTried = 0; // Date.now() of the last time the stream was not there, ended or failed
    this.switches = [];   // {mode, at: performance.now()}, for the browser tests
    setInterval(() => this.tick(), 1000);
  }

  /** Another page serves this user in this lesson (the main classroom, or the other listener page): go there. */
  routeTo(seat) {
    const page = seat === "main" ? lessonPageFor("main", this.lesson.id)
      : seat === "student" && this.cfg.kind !== "student" ? lessonPageFor("student", this.lesson.id)
        : seat === "receiving" && this.cfg.kind !== "receiving" ? lessonPageFor("receiving", this.lesson.id) : null;
    if (page) location.replace(page);
    return !!page;
  }

  async findLesson() {
    const wanted = new URLSearchParams(location.search).get("lesson");
    try {
      if (wanted) {
        this.lesson = await api(`/lessons/${encodeURIComponent(wanted)}`);
      } else {
        const query = { date_from: todayISO(), date_to: todayISO(), limit: 500 };
        if (this.user.classroom_id) query.classroom_id = this.user.classroom_id;
        // a terminal: its classroom's lessons; a teacher: the lessons they assist (助教)
        const list = (await api("/lessons", { query })).data
          .filter((l) => ["scheduled", "live"].includes(l.status) && wall(l.ends_at) > Date.now())
          .filter((l) => this.user.role !== "teacher" || seatIn(this.user, l) === "assistant")
          .sort((a, b) => a.starts_at.localeCompare(b.starts_at));
        this.lesson = list[0] || null;
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 0) {
        renderBanner($("banner"), { state: "reconnecting", reason: "unreachable", retryInMs: 10000 });
      } else {
        $("next-title").textContent = e.status === 404 ? "课程不存在" : `无法读取课程：${e.message}`;
        if (e.status === 404 || e.status === 403) return;
      }
      setTimeout(() => this.findLesson(), 10000);
      return;
    }
    $("banner").hidden = true;
    if (!this.lesson) {
      $("next-title").textContent = "今天没有更多课程";
      $("next-meta").textContent = "";
      $("next-countdown").textContent = "";
      setTimeout(() => this.findLesson(), 60000);
      return;
    }
    const l = this.lesson;
    // the terminal of the lesson's main classroom, or its teacher: the main classroom page
    if (seatIn(this.user, l) === "main" && this.routeTo("main")) return;
    $("next-title").textContent = l.title;
    $("next-meta").textContent = `${KIND_LABEL[l.kind] || l.kind} · ${fmtRange(l.starts_at, l.ends_at)} · 主讲：${l.main_school_name} ${l.teacher_name}`;
    if (l.status === "held" || l.status === "missed") { this.showEnded("本节课已结束"); return; }
    if (l.status === "cancelled") { this.showEnded("本节课已停课", l.cancel_reason ? `原因：${l.cancel_reason}` : ""); return; }
    this.tick();
    this.join();
  }

  tick() {
    this.syncMode();
    if (this.ended || !this.lesson || !$("next") || $("next").hidden) return;
    const now = Date.now();
    const toStart = wall(this.lesson.starts_at) - now;
    $("next-countdown").textContent = toStart > 0 ? `距上课还有 ${fmtDuration(toStart)}`
      : wall(this.lesson.ends_at) > now ? "已到上课时间" : "已过下课时间";
  }

  /** One end state: the title says so, no countdown, what comes next. */
  showEnded(title, note = null) {
    this.ended = true;
    $("banner").hidden = true;
    $("classroom").hidden = true;
    $("next").hidden = false;
    $("next").dataset.state = "ended";
    $("next-title").textContent = title;
    $("next-countdown").textContent = "";
    $("next-countdown").hidden = true;
    $("next-note").textContent = note ?? (this.cfg.kind === "receiving" ? "稍后自动显示下一节课。" : "课后可在录播资源库回看。");
    for (const a of document.querySelectorAll("#audio-sinks audio")) a.remove();
    if (this.stream) { this.stream.stop(); this.stream = null; } // the stream's sound too
  }

  join() {
    // the join token says which seat this user has: another page's seat goes to that page
    const getToken = async () => {
      const tok = await api(`/lessons/${this.lesson.id}/join-token`, { method: "POST" });
      if (this.routeTo(tok.lesson_role)) return new Promise(() => {}); // leaving this page
      return tok;
    };
    const lc = new LessonClient(this.lesson.id, { getToken });
    this.lc = lc;
    window.sankeLesson = lc; // for the operator's console and the browser tests
    lc.on("state", (st) => this.onState(st));
    lc.on("joined", () => this.onJoined());
    lc.on("roster", () => this.render());
    lc.on("room", () => this.render());
    lc.on("stage", () => this.render());
    lc.on("hand", () => this.render());
    lc.on("track", (t) => this.onTrack(t));
    lc.on("trackended", (t) => { if (t.source === "microphone") stopAudio(t.key); });
    lc.on("local", ({ source, track }) => {
      if (source !== "camera") return;
      if (track) showVideo($("local-video"), new MediaStream([track]));
      this.render();
    });
    lc.on("muted", (m) => { if (m.muted) toast(m.source === "microphone" ? "老师已将本课堂静音" : "老师关闭了本课堂的摄像头", "warn"); this.render(); });
    const myQuality = qualityDot();
    fill($("my-quality"), myQuality);
    lc.on("localquality", (q) => setQuality(myQuality, q.quality));
    // the teacher's annotation over the shared screen, drawn over whatever plays it (WebRTC or the stream)
    this.board = new Board($("screen-video"));
    window.sankeBoard = this.board; // for the browser tests
    lc.on("message", (m) => { if (m.type === "annotation") this.board.apply(m); });
    lc.on("error", (m) => {
      // no WebRTC seat left (a streamed lesson whose stream is refused): said until the server connects us
      if (m.code === "seats_full") { this.seatsFull = true; this.showMode(); }
      toast(m.message || m.code, m.code === "seats_full" ? "warn" : "error");
    });
    fill($("chat-box"), chatPanel(lc));
    fill($("quiz-box"), quizAnswerPanel(lc));
    // a home student whose series may put them on the stream: no media until that is decided
    if (this.cfg.kind === "student" && this.lesson.kind === "famous_school" && this.lesson.stream_from != null) this.mode = "deciding";
    this.subscriptions = (participants, room, client) => {
      const subs = [];
      if (this.mode !== "webrtc") return subs; // the stream (or the switch to it): no WebRTC media
      const main = [...participants.values()].find((p) => p.role === "main");
      if (main) {
        for (const source of ["camera", "microphone", "screen"]) subs.push({ participant_id: main.participant_id, source });
      }
      if (room && room.on_stage && room.on_stage !== client.participantId) {
        subs.push({ participant_id: "stage", source: "camera" }, { participant_id: "stage", source: "microphone" });
      }
      return subs;
    };
    lc.setSubscriptions(this.subscriptions);
    $("btn-hand").onclick = () => {
      const up = !(lc.me && lc.me.hand_raised);
      lc.raiseHand(up).then(() => { if (lc.me) lc.me = { ...lc.me, hand_raised: up }; this.render(); }).catch(showError);
    };
    $("btn-mic").onclick = async () => {
      const mic = lc.local.get("microphone");
      if (!mic) return;
      try { await lc.setMuted("microphone", mic.enabled); } catch (e) { showError(e); }
      this.render();
    };
    if (this.cfg.kind === "student" && this.lesson.kind === "famous_school") this.setUpStream();
    lc.connect().catch(() => { /* the banner says why */ });
  }

  /** A famous-school lesson's home student: the stream when the series' policy says so (stream.js). */
  async setUpStream() {
    let mod = null;
    try { mod = await import("/lesson/stream.js"); } catch (e) { console.warn("stream.js", e); }
    if (!mod || !mod.streamSupported()) { if (this.mode === "deciding") this.setMode("webrtc"); return; }
    const { LessonStream, StreamPolicy } = mod;
    this.policy = new StreamPolicy(this.lesson.stream_from);
    this.LessonStream = LessonStream;
    const page = this;
    window.sankeStream = {
      get mode() { return page.mode; },
      switches: this.switches,
      cameraDate: () => (page.stream ? page.stream.playingDate("camera") : null),
      screenDate: () => (page.stream ? page.stream.playingDate("screen") : null),
      get stream() { return page.stream; },
      renew: () => (page.stream ? page.stream.renew() : Promise.resolve()),
    };
    this.syncMode();
  }

  /** Whether this page should watch the stream now (it is tried only every 30 s after it was not there). */
  wantStream() {
    const lc = this.lc;
    if (!this.policy || this.ended || !lc || lc.state !== "joined" || !lc.me) return false;
    const me = lc.participants.get(lc.participantId) || lc.me;
    if (me.on_stage) return false;
    const homeStudents = [...lc.participants.values()].filter((p) => p.role === "student").length;
    return this.policy.wants(homeStudents);
  }

  syncMode() {
    if (!this.policy || !this.lc || this.lc.state !== "joined") return;
    const want = this.wantStream();
    if (want && (this.mode === "deciding" || (this.mode === "webrtc" && Date.now() - this.streamTried >= 30000))) this.toStream();
    else if (!want && this.mode !== "webrtc") this.toWebrtc();
  }

  setMode(mode) {
    this.mode = mode;
    this.switches.push({ mode, at: performance.now() });
    this.showMode();
    document.body.classList.toggle("watching-stream", mode === "stream");
    this.lc.setSubscriptions(this.subscriptions); // re-evaluated for the new mode
  }

  /** The small label of a famous-school lesson's home student: 直播流 or 实时互动 (nothing while undecided). */
  showMode() {
    const label = $("watch-mode");
    if (!label || this.cfg.kind !== "student" || this.lesson.kind !== "famous_school") return;
    label.hidden = this.mode !== "stream" && this.mode !== "webrtc";
    const full = this.mode === "webrtc" && this.seatsFull;
    label.textContent = this.mode === "stream" ? "直播流" : full ? "实时观看席位已满，有空位后自动接通" : "实时互动";
    label.dataset.mode = full ? "seats-full" : this.mode;
  }

  async toStream() {
    this.setMode("starting"); // no WebRTC media from here on: the stream's players take the <video>s
    const stream = new this.LessonStream(this.lesson.id, {
      camera: $("teacher-video"), screen: $("screen-video"),
      onEnd: () => { if (this.stream === stream) { this.streamTried = Date.now(); this.toWebrtc(); } },
      onScreen: () => this.render(),
    });
    this.stream = stream;
    stream.setScreen(this.screenShared());
    const ok = await stream.start();
    if (this.stream !== stream) return; // switched away meanwhile (brought on stage)
    if (!ok) { this.streamTried = Date.now(); this.toWebrtc(); return; }
    this.setMode("stream");
    this.render();
  }

  toWebrtc() {
    if (this.stream) { this.stream.stop(); this.stream = null; }
    for (const id of ["teacher-video", "screen-video"]) $(id).srcObject = null;
    this.setMode("webrtc");
    // tracks still held from before the stream: shown again at once
    for (const t of this.lc.remote.values()) this.onTrack(t);
    this.render();
  }

  /** The main classroom shares its screen (its publications in the roster). */
  screenShared() {
    const main = this.lc && [...this.lc.participants.values()].find((p) => p.role === "main");
    return !!(main && (main.publications || []).some((p) => p.source === "screen"));
  }

  onState(st) {
    if (this.ended) return; // the end card says it all
    renderBanner($("banner"), st);
    if (st.state === "waiting") {
      $("next-note").textContent = "课堂尚未开放，开放后本终端自动进入。";
    }
    if (st.state === "closed") {
      const over = st.reason === "room_closed";
      if (over) this.showEnded("本节课已结束");
      else this.showEnded(st.reason === "replaced" ? "已在其他设备进入课堂" : st.reason === "kicked" ? "已被移出课堂" : "已离开课堂", "");
      if (this.cfg.kind === "receiving" && over) setTimeout(() => location.reload(), 30000);
    }
    if (st.state === "failed" && st.reason === "lesson_over") this.showEnded("本节课已结束");
  }

  onJoined() {
    const l = this.lesson;
    this.showMode();
    $("next").hidden = true;
    $("classroom").hidden = false;
    $("lesson-title").textContent = l.title;
    $("lesson-meta").textContent = `${fmtRange(l.starts_at, l.ends_at)} · ${l.main_school_name} ${l.teacher_name}`;
    const me = this.lc.me;
    $("btn-hand").hidden = !!(me && me.listen_only);
    this.render();
    this.syncPublishing();
  }

  /** receiving: camera + microphone all lesson long (not listen-only); student: only while on stage. */
  async syncPublishing() {
    const lc = this.lc;
    if (!lc || lc.state !== "joined" || !lc.me) return;
    const want = this.cfg.kind === "receiving" ? !lc.me.listen_only : !!lc.me.on_stage;
    const has = lc.local.has("camera") || lc.local.has("microphone");
    if (want && !has && !this.publishing) {
      this.publishing = true;
      try {
        await lc.publishUserMedia({ video: { width: 1280, height: 720 }, audio: true });
      } catch (e) {
        if (e && e.name) {
          renderBanner($("banner"), { state: "failed", reason: "media", message: mediaErrorText(e) });
          $("banner").dataset.state = "media-denied";
        }
      } finally { this.publishing = false; }
    } else if (!want && has && this.cfg.kind === "student") {
      await lc.unpublish("camera").catch(() => {});
      await lc.unpublish("microphone").catch(() => {});
    }
  }

  /** Brought on stage: the teacher wants to hear this classroom, so its microphone opens (unless the teacher muted it). */
  async speakUp() {
    const lc = this.lc;
    const me = lc.me || {};
    const mic = lc.local.get("microphone");
    const pub = (me.publications || []).find((p) => p.source === "microphone");
    if (!mic || (me.muted_by_teacher || []).includes("microphone")) return;
    if (mic.enabled && !(pub && pub.muted)) return;
    try { await lc.setMuted("microphone", false); } catch (e) { toast(`无法打开麦克风：${e.message}`, "warn"); }
    this.render();
  }

  onTrack(t) {
    const lc = this.lc;
    if (this.mode !== "webrtc") return; // the stream plays (the switch unsubscribes these)
    if (this.seatsFull) { this.seatsFull = false; this.showMode(); } // a seat became free
    if (t.source === "microphone") { playAudio(t.key, t.track); return; }
    if (t.participantId === "stage") showVideo($("stage-video"), t.stream);
    else if (t.source === "camera") showVideo($("teacher-video"), t.stream);
    else if (t.source === "screen") showVideo($("screen-video"), t.stream);
    this.render();
    void lc;
  }

  render() {
    const lc = this.lc;
    if (!lc || !lc.me) return;
    const me = lc.participants.get(lc.participantId) || lc.me;
    lc.me = me;
    const room = lc.room || {};
    const main = [...lc.participants.values()].find((p) => p.role === "main");
    $("teacher-caption").textContent = main ? `主讲：${main.display_name}` : "主讲老师尚未进入";
    if (this.stream) this.stream.setScreen(this.screenShared());
    const sharing = this.mode === "webrtc" ? this.screenShared() && !!lc.remoteTrack(main.participant_id, "screen")
      : !!(this.stream && this.stream.screenPlaying);
    $("screen-view").hidden = !sharing;
    document.querySelector(".recv-views").classList.toggle("with-screen", sharing);
    // the student on stage comes by WebRTC only (the stream is the main classroom's)
    const stageP = room.on_stage && room.on_stage !== lc.participantId && this.mode === "webrtc" ? lc.participants.get(room.on_stage) : null;
    $("stage-view").hidden = !stageP;
    if (stageP) $("stage-caption").textContent = `上台：${stageP.display_name}`;
    $("stage-flag").hidden = !me.on_stage;
    if (me.on_stage && !this.wasOnStage) this.speakUp();
    this.wasOnStage = !!me.on_stage;
    document.body.classList.toggle("me-on-stage", !!me.on_stage);
    // muted: by the teacher, or by 全体静音 for as long as this side has not spoken up again
    // (the classroom on stage may reopen its microphone)
    const mic = lc.local.get("microphone");
    const micPub = (me.publications || []).find((x) => x.source === "microphone");
    const speaking = !!(mic && mic.enabled && !(micPub && micPub.muted));
    const mutedByTeacher = (me.muted_by_teacher || []).includes("microphone");
    const mutedAll = !!room.muted_all && !speaking;
    $("mute-flag").hidden = !(mutedByTeacher || mutedAll);
    $("mute-text").textContent = mutedByTeacher ? "已被老师静音" : "全体静音中";
    $("btn-mic").hidden = !mic;
    if (mic) label($("btn-mic"), mic.enabled ? "mic" : "mic-off", mic.enabled ? "关闭麦克风" : "打开麦克风");
    label($("btn-hand"), "hand", me.hand_raised ? "放下手" : "举手");
    // this side's own picture: only while its camera is out (a student: on stage)
    $("local-view").hidden = !lc.local.get("camera");
    $("btn-hand").classList.toggle("btn-ok", !!me.hand_raised);
    this.syncPublishing();
    this.syncMode();
  }
}
