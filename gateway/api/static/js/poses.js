// poses.json (schema 2.0, with fall-backs for 1.0) turned into per-track arrays the viewer and the
// plots index by frame. Coordinates stay as the file gives them: metres, y up, floor at y = 0.

const JOINTS = 17;

/** Where the 3D positions came from, best first, with a line saying what it means for the view. */
const SOURCES = [
  ["keypoints_3d_world", "world",
    "Positions in one world frame shared by all persons, in metres: floor at 0, axes x red (right), y green (up), z blue (towards the camera)."],
  ["keypoints_3d_grounded", "grounded", "Each person stands on the floor; positions between persons are approximate."],
  ["keypoints_3d_root_relative", "root_relative",
    "Poses are pelvis-centred (no root motion in this file): persons are placed side by side, 1 m apart."],
];

function emptyTrack(id, frames) {
  return {
    id,
    joints: new Float32Array(frames * JOINTS * 3).fill(NaN),
    present: new Uint8Array(frames),
    angles: {},
    confidence: {},
    contacts: null,
  };
}

function pickSource(frames) {
  for (const [field, name, note] of SOURCES) {
    if (frames.some((f) => f.persons.some((p) => Array.isArray(p[field])))) return { field, name, note };
  }
  return null;
}

/** Index of the frame shown at time t (s): the last one whose timestamp is <= t, 0.1 ms of slack for
 * rounding in the video element's currentTime. */
export function frameAtTime(times, t) {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0) return -1;
  if (t <= times[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t + 1e-4) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/**
 * The model of one job's poses:
 *   {frameCount, times[], fps, still, source {name, note}, tracks: Map(id -> track),
 *    angleInfo: [{name, unit, convention}], warnings[], camera}
 * track: {id, joints Float32Array [F*17*3] (NaN where absent), present Uint8Array [F],
 *         angles {name: Float64Array [F] of degrees, NaN where unknown}, confidence {name: [F]},
 *         contacts {left, right: Uint8Array [F]} | null}
 */
export function parsePoses(doc) {
  if (!doc || !Array.isArray(doc.frames)) throw new Error("poses.json has no frames");
  const frames = doc.frames;
  const F = frames.length;
  const times = frames.map((f, i) => (typeof f.timestamp_s === "number" ? f.timestamp_s : i / (doc.video?.fps || 30)));
  const source = pickSource(frames);
  const tracks = new Map();
  const angleNames = new Set((doc.angles || []).map((a) => a.name));
  frames.forEach((frame, i) => {
    for (const p of frame.persons || []) {
      if (!tracks.has(p.track_id)) tracks.set(p.track_id, emptyTrack(p.track_id, F));
      const track = tracks.get(p.track_id);
      const pts = source ? p[source.field] : null;
      if (Array.isArray(pts) && pts.length === JOINTS) {
        track.present[i] = 1;
        pts.forEach((xyz, j) => track.joints.set(xyz.slice(0, 3), (i * JOINTS + j) * 3));
      }
      if (p.angles_deg) {
        for (const [name, value] of Object.entries(p.angles_deg)) {
          angleNames.add(name);
          if (!track.angles[name]) track.angles[name] = new Float64Array(F).fill(NaN);
          track.angles[name][i] = typeof value === "number" ? value : NaN;
        }
      }
      if (p.angle_confidence) {
        for (const [name, value] of Object.entries(p.angle_confidence)) {
          if (!track.confidence[name]) track.confidence[name] = new Float64Array(F).fill(NaN);
          track.confidence[name][i] = typeof value === "number" ? value : NaN;
        }
      }
      if (p.foot_contacts) {
        if (!track.contacts) track.contacts = { left: new Uint8Array(F), right: new Uint8Array(F) };
        track.contacts.left[i] = p.foot_contacts.left ? 1 : 0;
        track.contacts.right[i] = p.foot_contacts.right ? 1 : 0;
      }
    }
  });
  if (source && source.name === "root_relative") placeSideBySide([...tracks.values()], F);
  const units = doc.units?.angles || "degrees";
  const described = new Map((doc.angles || []).map((a) => [a.name, a]));
  const angleInfo = [...angleNames].map((name) => described.get(name) || { name, unit: units, convention: "" });
  return {
    frameCount: F,
    times,
    fps: doc.video?.fps || 0,
    still: Boolean(doc.video?.still_image) || F === 1,
    video: doc.video || {},
    source: source ? { name: source.name, note: source.note } : null,
    tracks,
    angleInfo,
    anglesFrom: angleInfo.length ? "poses.json" : null,
    warnings: doc.warnings || [],
    camera: doc.camera || null,
    cameraPath: parseCameraPath(doc, frames),
  };
}

/**
 * The video camera in every frame, from frames[].camera and the top-level camera's height:
 * {centre: [x, y, z] (world, metres; the camera turns and zooms but stays there), width, height (pixels),
 *  rotation: Float32Array [F*4] camera -> world quaternions (w, x, y, z), focal: Float32Array [F] pixels,
 *  quality: [F] strings}, or null when the file has no per-frame camera.
 */
function parseCameraPath(doc, frames) {
  const F = frames.length;
  if (!doc.camera || !F || !frames.every((f) => f.camera && Array.isArray(f.camera.rotation))) return null;
  const rotation = new Float32Array(F * 4);
  const focal = new Float32Array(F);
  frames.forEach((f, i) => {
    rotation.set(f.camera.rotation.slice(0, 4), i * 4);
    focal[i] = f.camera.focal_px;
  });
  return {
    centre: [0, doc.camera.height_m, 0],
    width: doc.video?.width || 0,
    height: doc.video?.height || 0,
    rotation,
    focal,
    quality: frames.map((f) => f.camera.quality),
  };
}

/** Root-relative poses only: lift each track onto the floor and set the tracks 1 m apart in x. */
function placeSideBySide(tracks, F) {
  tracks.sort((a, b) => a.id - b.id);
  tracks.forEach((track, k) => {
    let minY = Infinity;
    for (let i = 1; i < F * JOINTS * 3; i += 3) if (track.joints[i] < minY) minY = track.joints[i];
    if (!Number.isFinite(minY)) return;
    const dx = (k - (tracks.length - 1) / 2) * 1.0;
    for (let i = 0; i < F * JOINTS * 3; i += 3) {
      track.joints[i] += dx;
      track.joints[i + 1] -= minY;
    }
  });
}

/**
 * Angles from joint_angles.csv (columns frame, timestamp_s, track_id, <name>_deg ...), for a
 * poses.json that carries none. Fills model.tracks[*].angles and model.angleInfo in place.
 */
export function addAnglesFromCsv(model, text) {
  const lines = text.trim().split(/\r?\n/);
  if (lines.length < 2) return;
  const header = lines[0].split(",");
  const iFrame = header.indexOf("frame");
  const iTrack = header.indexOf("track_id");
  const columns = header.map((h, k) => [h, k]).filter(([h]) => h.endsWith("_deg"));
  if (iFrame < 0 || iTrack < 0 || !columns.length) return;
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    const frame = Number(cells[iFrame]);
    const track = model.tracks.get(Number(cells[iTrack]));
    if (!track || !(frame >= 0 && frame < model.frameCount)) continue;
    for (const [h, k] of columns) {
      const name = h.slice(0, -4);
      if (!track.angles[name]) track.angles[name] = new Float64Array(model.frameCount).fill(NaN);
      track.angles[name][frame] = cells[k] === "" ? NaN : Number(cells[k]);
    }
  }
  model.angleInfo = columns.map(([h]) => ({ name: h.slice(0, -4), unit: "degrees", convention: "" }));
  model.anglesFrom = "joint_angles.csv";
}

/** [x, y, z] of joint j of a track at frame i, or null when the track is absent there. */
export function jointAt(track, i, j) {
  if (!track.present[i]) return null;
  const o = (i * JOINTS + j) * 3;
  return [track.joints[o], track.joints[o + 1], track.joints[o + 2]];
}

/** Axis-aligned bounds {min: [x,y,z], max: [x,y,z]} of every present joint of every track. */
export function bounds(model) {
  const min = [Infinity, Infinity, Infinity];
  const max = [-Infinity, -Infinity, -Infinity];
  for (const track of model.tracks.values()) {
    for (let i = 0; i < track.joints.length; i += 3) {
      const x = track.joints[i];
      if (!Number.isFinite(x)) continue;
      for (let a = 0; a < 3; a++) {
        min[a] = Math.min(min[a], track.joints[i + a]);
        max[a] = Math.max(max[a], track.joints[i + a]);
      }
    }
  }
  return { min, max };
}

export { JOINTS };
