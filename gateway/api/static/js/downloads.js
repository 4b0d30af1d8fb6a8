// The artefact list: every file a job produced, with its size and a line saying what it is and
// what opens it.

const DESCRIPTIONS = [
  [/^render\.mp4$/, "The video with each person's 2D skeleton drawn on it and a 3D view beside it. H.264 MP4: any browser or video player."],
  [/^render\.png$/, "The image with each person's 2D skeleton drawn on it and a 3D view beside it. PNG: any image viewer."],
  [/^poses\.json$/, "Per frame and person: 2D keypoints (pixels), 3D joints (metres), foot contacts and joint angles, with the units and conventions. JSON: Python, JavaScript, any text editor (format in the README)."],
  [/^joints3d\.csv$/, "3D joint positions in metres, one row per frame, person and joint. CSV: a spreadsheet, pandas, R."],
  [/^joint_angles\.csv$/, "Joint angles in degrees, one row per frame and person. CSV: a spreadsheet, pandas, R."],
  [/^person_(\d+)\.bvh$/, "Person $1's motion as an animated skeleton. BVH: Blender (File > Import > Motion Capture), Maya, MotionBuilder."],
  [/^thumbnail\.jpg$/, "A small preview picture of the result (JPEG)."],
];

export function describeArtifact(name, contentType) {
  for (const [pattern, text] of DESCRIPTIONS) {
    const m = pattern.exec(name);
    if (m) return text.replace("$1", m[1]);
  }
  return contentType ? `${contentType} file.` : "";
}

export function humanSize(bytes) {
  if (!(bytes >= 0)) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let v = bytes / 1024;
  let k = 0;
  while (v >= 1024 && k < units.length - 1) { v /= 1024; k++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[k]}`;
}

export function renderDownloads(list, artifacts) {
  list.replaceChildren();
  for (const a of artifacts) {
    const li = document.createElement("li");
    const link = Object.assign(document.createElement("a"), { href: a.url, textContent: a.name });
    link.setAttribute("download", a.name);
    const size = Object.assign(document.createElement("span"), { className: "size", textContent: humanSize(a.size_bytes) });
    const what = Object.assign(document.createElement("p"), { className: "what", textContent: describeArtifact(a.name, a.content_type) });
    li.append(link, " ", size, what);
    list.append(li);
  }
}
