// The Human3.6M-17 joint order of poses.json's 3D keypoints ("joints_3d"), its bones and its sides,
// and the COCO-17 bones and sides of the 2D keypoints, as services/common/skeletons.py defines them
// (tests/unit/test_web_page.py checks they agree).

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

export const COCO17_BONES = [
  [0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10],
  [5, 11], [6, 12], [11, 12], [11, 13], [13, 15], [12, 14], [14, 16],
];

export const COCO17_LEFT = [1, 3, 5, 7, 9, 11, 13, 15];
export const COCO17_RIGHT = [2, 4, 6, 8, 10, 12, 14, 16];

/** "left", "right" or "mid": the side a bone is drawn as (the 2D overlay's rule); H36M-17 bones
 * unless the sides of another skeleton are given. */
export function boneSide([a, b], leftSide = H36M17_LEFT, rightSide = H36M17_RIGHT) {
  const left = leftSide.includes(a) || leftSide.includes(b);
  const right = rightSide.includes(a) || rightSide.includes(b);
  if (left && !right) return "left";
  if (right && !left) return "right";
  return "mid";
}
