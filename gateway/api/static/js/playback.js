// One clock for the result view. With a rendered video the video element is the clock (its own
// controls, the viewer's controls and chart clicks all move it); without one (image jobs, jobs run
// with render off) a free-running clock plays the poses at their own timestamps.

export class VideoClock {
  constructor(video) {
    this.video = video;
    this.listeners = [];
    this.running = false;
    const tick = () => {
      this.emit();
      if (!this.video.paused && !this.video.ended) this.schedule(tick);
      else this.running = false;
    };
    this.tick = tick;
    for (const name of ["seeking", "seeked", "timeupdate", "loadeddata", "pause", "ended"]) {
      video.addEventListener(name, () => this.emit());
    }
    video.addEventListener("play", () => this.start());
    video.addEventListener("playing", () => this.start());
  }

  schedule(fn) {
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(() => fn());
    else requestAnimationFrame(fn);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.schedule(this.tick);
  }

  get time() { return this.video.currentTime; }
  get paused() { return this.video.paused; }
  get duration() { return this.video.duration; }
  play() { return this.video.play(); }
  pause() { this.video.pause(); }

  seek(t) {
    this.video.currentTime = t;
    this.emit(t);
  }

  onTime(fn) { this.listeners.push(fn); }
  emit(t = this.video.currentTime) { for (const fn of this.listeners) fn(t); }
}

export class FreeClock {
  /** duration in seconds: the last pose's timestamp plus one frame. */
  constructor(duration) {
    this.duration = duration;
    this.t = 0;
    this.paused = true;
    this.listeners = [];
    this.last = 0;
  }

  get time() { return this.t; }

  play() {
    if (!this.paused) return Promise.resolve();
    if (this.t >= this.duration) this.t = 0;
    this.paused = false;
    this.last = performance.now();
    const step = (now) => {
      if (this.paused) return;
      this.t = Math.min(this.duration, this.t + (now - this.last) / 1000);
      this.last = now;
      if (this.t >= this.duration) this.paused = true; else requestAnimationFrame(step);
      this.emit();
    };
    requestAnimationFrame(step);
    return Promise.resolve();
  }

  pause() {
    this.paused = true;
    this.emit();
  }

  seek(t) {
    this.t = Math.max(0, Math.min(this.duration, t));
    this.emit();
  }

  onTime(fn) { this.listeners.push(fn); }
  emit() { for (const fn of this.listeners) fn(this.t); }
}
