// The live path as the page uses it: the camera (getUserMedia), its frames as JPEGs over the
// WebSocket /v1/live (8 bytes of capture time, then the JPEG), the answers back, and the latency
// statistics of the last few seconds. The protocol is described at GET /v1/live (the API docs).

export const LIVE_PATH = "/v1/live";
const MAX_SIDE = 640;             // frames are sent at most this long on their longer side
const JPEG_QUALITY = 0.8;
const MAX_BUFFERED = 512 * 1024;  // a frame is not sent while the socket still holds this much unsent
const STATS_WINDOW_MS = 5000;

/** p-th percentile (0..100) of numbers, by linear interpolation; NaN for none. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Latency (capture -> 3D back) and answers per second over the last few seconds. */
export class LatencyStats {
  constructor(windowMs = STATS_WINDOW_MS) {
    this.windowMs = windowMs;
    this.samples = [];   // [arrival ms, latency ms]
  }

  add(now, latency) {
    this.samples.push([now, latency]);
    while (this.samples.length && this.samples[0][0] < now - this.windowMs) this.samples.shift();
  }

  summary(now) {
    const recent = this.samples.filter(([t]) => t >= now - this.windowMs);
    const latencies = recent.map(([, l]) => l);
    const span = recent.length > 1 ? (recent[recent.length - 1][0] - recent[0][0]) / 1000 : 0;
    return {
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      fps: span > 0 ? (recent.length - 1) / span : 0,
      count: recent.length,
    };
  }
}

export class LiveClient {
  /**
   * handlers: {onReady(msg), onFrame(msg, latencyMs), onRecording(msg), onRecorded(msg),
   * onError(text), onClose(code, reason)}; options: {maxPersons}.
   */
  constructor(handlers, options = {}) {
    this.handlers = handlers;
    this.options = options;
    this.stream = null;
    this.socket = null;
    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement("canvas");
    this.encoding = false;
    this.skipped = 0;     // camera frames not sent: the previous one was still being encoded or sent
    this.sent = 0;
    this.stopped = false;
  }

  /** Open the camera and the socket; rejects with an Error whose message says what went wrong. */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("This browser cannot open a camera here (camera access needs https or localhost).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: false, video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      });
    } catch (err) {
      const words = err.name === "NotAllowedError" ? "Camera access was refused; allow it in the browser and retry."
        : err.name === "NotFoundError" ? "No camera was found." : `The camera could not be opened (${err.message}).`;
      throw new Error(words);
    }
    this.video.srcObject = this.stream;
    await this.video.play();
    await this.openSocket();
    this.scheduleCapture();
  }

  openSocket() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.options.maxPersons ? `?max_persons=${this.options.maxPersons}` : "";
    const socket = new WebSocket(`${scheme}//${location.host}${LIVE_PATH}${query}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error("The live connection to the server failed.")), { once: true });
      socket.addEventListener("message", (e) => this.receive(e.data));
      socket.addEventListener("close", (e) => { if (!this.stopped) this.handlers.onClose?.(e.code, e.reason); });
    });
  }

  receive(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.type === "frame") this.handlers.onFrame?.(msg, performance.now() - msg.capture_ms);
    else if (msg.type === "ready") this.handlers.onReady?.(msg);
    else if (msg.type === "recording") this.handlers.onRecording?.(msg);
    else if (msg.type === "recorded") this.handlers.onRecorded?.(msg);
    else if (msg.type === "error") this.handlers.onError?.(msg.detail);
  }

  scheduleCapture() {
    if (this.stopped) return;
    if (this.video.requestVideoFrameCallback) {
      this.video.requestVideoFrameCallback(() => { this.capture(); this.scheduleCapture(); });
    } else {
      this.timer = setTimeout(() => { this.capture(); this.scheduleCapture(); }, 1000 / 30);
    }
  }

  /** One camera frame to the server, unless the previous one is still on its way. */
  capture() {
    const socket = this.socket;
    const w = this.video.videoWidth;
    const h = this.video.videoHeight;
    if (!socket || socket.readyState !== WebSocket.OPEN || !w || !h) return;
    if (this.encoding || socket.bufferedAmount > MAX_BUFFERED) {
      this.skipped++;
      return;
    }
    const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
    this.canvas.width = Math.round(w * scale);
    this.canvas.height = Math.round(h * scale);
    const captured = performance.now();
    this.canvas.getContext("2d").drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    this.encoding = true;
    this.canvas.toBlob(async (blob) => {
      try {
        if (!blob || this.stopped || socket.readyState !== WebSocket.OPEN) return;
        const jpeg = new Uint8Array(await blob.arrayBuffer());
        const message = new Uint8Array(8 + jpeg.length);
        new DataView(message.buffer).setFloat64(0, captured, true);
        message.set(jpeg, 8);
        socket.send(message);
        this.sent++;
      } finally {
        this.encoding = false;
      }
    }, "image/jpeg", JPEG_QUALITY);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  /** Close the socket and the camera: the server frees the session. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close();
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.video.srcObject = null;
  }
}
