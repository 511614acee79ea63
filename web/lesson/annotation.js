// The annotation of the shared screen (同屏批注): strokes drawn on a canvas laid over the screen's <video>,
// in the picture's own coordinates (0..1 across and down), so each page draws a stroke at the same place of
// the picture whatever the size of its video (the picture is letterboxed: object-fit contain). The video is
// never touched or re-encoded. `Board` keeps the strokes and draws them; the main classroom's page also
// lets the teacher draw (`enableDrawing`), sending each finished stroke as `annotate`. The replay page
// draws the strokes of the lesson's log at their times with the same Board.

export const TOOLS = { pen: "笔", highlighter: "荧光笔", arrow: "箭头", text: "文字" };
export const COLORS = ["#dc2626", "#2563eb", "#16a34a", "#f59e0b", "#111827", "#ffffff"];
const WIDTH = { pen: 0.004, highlighter: 0.02, arrow: 0.005, text: 0.025 };

/** The rectangle the video's picture occupies inside the element (object-fit: contain). */
function pictureRect(video, w, h) {
  const vw = video.videoWidth || 16;
  const vh = video.videoHeight || 9;
  const scale = Math.min(w / vw, h / vh);
  const pw = vw * scale;
  const ph = vh * scale;
  return { x: (w - pw) / 2, y: (h - ph) / 2, w: pw, h: ph };
}

export class Board {
  /** `video`: the shared screen's <video>; a canvas is laid over it in its parent (position: relative). */
  constructor(video) {
    this.video = video;
    this.strokes = [];
    this.canvas = document.createElement("canvas");
    this.canvas.className = "annotation-layer";
    this.canvas.setAttribute("aria-hidden", "true");
    video.parentElement.appendChild(this.canvas);
    this.draft = null;
    const redraw = () => this.draw();
    new ResizeObserver(redraw).observe(video);
    video.addEventListener("loadedmetadata", redraw);
    video.addEventListener("resize", redraw);
  }

  /** Apply an `annotation` message of the server. */
  apply(msg) {
    if (msg.action === "state") this.strokes = [...(msg.strokes || [])];
    else if (msg.action === "stroke" && !this.strokes.some((s) => s.id === msg.stroke.id)) this.strokes.push(msg.stroke);
    else if (msg.action === "undo") this.strokes = this.strokes.filter((s) => s.id !== msg.stroke.id);
    else if (msg.action === "clear") this.strokes = [];
    this.draw();
  }

  /** Replace the strokes (the replay: those of the log up to the clock's time). */
  set(strokes) {
    this.strokes = strokes;
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const w = c.clientWidth;
    const h = c.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const r = pictureRect(this.video, w, h);
    this.rect = r;
    for (const s of this.draft ? [...this.strokes, this.draft] : this.strokes) drawStroke(g, s, r);
    c.dataset.strokes = String(this.strokes.length);
  }

  /** Picture coordinates (0..1) of a pointer event, clamped to the picture. */
  at(ev) {
    const box = this.canvas.getBoundingClientRect();
    const r = this.rect || pictureRect(this.video, box.width, box.height);
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((ev.clientX - box.left - r.x) / r.w), clamp((ev.clientY - box.top - r.y) / r.h)];
  }
}

function drawStroke(g, s, r) {
  const pts = s.points.map(([x, y]) => [r.x + x * r.w, r.y + y * r.h]);
  const lw = Math.max(1, s.width * r.w);
  g.save();
  g.strokeStyle = s.color;
  g.fillStyle = s.color;
  g.lineCap = "round";
  g.lineJoin = "round";
  g.lineWidth = lw;
  if (s.tool === "highlighter") g.globalAlpha = 0.35;
  if (s.tool === "text") {
    g.font = `${Math.max(10, Math.round(s.width * r.w * 1.6))}px sans-serif`;
    g.textBaseline = "top";
    g.fillText(s.text || "", pts[0][0], pts[0][1]);
  } else if (pts.length === 1) {
    g.beginPath();
    g.arc(pts[0][0], pts[0][1], lw / 2, 0, 2 * Math.PI);
    g.fill();
  } else {
    g.beginPath();
    g.moveTo(pts[0][0], pts[0][1]);
    for (const [x, y] of pts.slice(1)) g.lineTo(x, y);
    g.stroke();
    if (s.tool === "arrow") {
      const [[x0, y0], [x1, y1]] = pts.slice(-2);
      const a = Math.atan2(y1 - y0, x1 - x0);
      const head = Math.max(8, lw * 4);
      g.beginPath();
      g.moveTo(x1, y1);
      g.lineTo(x1 - head * Math.cos(a - 0.45), y1 - head * Math.sin(a - 0.45));
      g.lineTo(x1 - head * Math.cos(a + 0.45), y1 - head * Math.sin(a + 0.45));
      g.closePath();
      g.fill();
    }
  }
  g.restore();
}

let seq = 0;
const newId = () => `a${Date.now().toString(36)}${(seq++).toString(36)}`;

/**
 * The teacher draws on `board` with the pointer: `tool()` and `color()` say what; each finished stroke goes
 * to the room by `send(stroke)` (the server's `annotation` then draws it, for everyone alike).
 */
export function enableDrawing(board, { tool, color, send, askText }) {
  const c = board.canvas;
  c.classList.add("drawing");
  c.removeAttribute("aria-hidden");
  let pointer = null;
  c.addEventListener("pointerdown", async (ev) => {
    const t = tool();
    if (!t) return;
    ev.preventDefault();
    const p = board.at(ev);
    if (t === "text") {
      const text = (await askText() || "").trim().slice(0, 200);
      if (text) send({ id: newId(), tool: "text", color: color(), width: WIDTH.text, points: [p], text });
      return;
    }
    pointer = ev.pointerId;
    c.setPointerCapture(ev.pointerId);
    board.draft = { id: newId(), tool: t, color: color(), width: WIDTH[t], points: [p] };
    board.draw();
  });
  c.addEventListener("pointermove", (ev) => {
    if (ev.pointerId !== pointer || !board.draft) return;
    const p = board.at(ev);
    const d = board.draft;
    if (d.tool === "arrow") d.points = [d.points[0], p];
    else if (d.points.length < 2000) d.points.push(p);
    board.draw();
  });
  const finish = (ev) => {
    if (ev.pointerId !== pointer || !board.draft) return;
    pointer = null;
    const d = board.draft;
    board.draft = null;
    if (d.tool === "arrow" && d.points.length < 2) d.points.push(d.points[0]);
    const round = (v) => Math.round(v * 10000) / 10000;
    d.points = d.points.map(([x, y]) => [round(x), round(y)]);
    send(d);
    board.draw();
  };
  c.addEventListener("pointerup", finish);
  c.addEventListener("pointercancel", finish);
}
