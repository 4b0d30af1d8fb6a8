// The Human3.6M-17 joint order of poses.json's 3D keypoints ("joints_3d"), its bones and its sides,
// as services/common/skeletons.py defines them (tests/unit/test_web_page.py checks they agree).

export const H36M17_JOINTS = [
  "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
  "spine", "thorax", "neck_nose", "head_top",
  "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
];

export const H36M17_BONES = [
  [0, 1], [1, 2], [2, 3], [0, 4], [4, 5], [5, 6], [0, 7], [7, 8], [8, 9], [9, 10],
  [8, 11], [11, 12], [12, 13], [8, 14], [14, 15], [15, 16],
];

export const H36M17_LEFT = [4, 5, 6, 11, 12, 13];
export const H36M17_RIGHT = [1, 2, 3, 14, 15, 16];
export const PELVIS = 0;

/** "left", "right" or "mid": the side a bone is drawn as (the 2D overlay's rule). */
export function boneSide([a, b]) {
  const left = H36M17_LEFT.includes(a) || H36M17_LEFT.includes(b);
  const right = H36M17_RIGHT.includes(a) || H36M17_RIGHT.includes(b);
  if (left && !right) return "left";
  if (right && !left) return "right";
  return "mid";
}
