// The interactive 3D view of one job: every person's Human3.6M-17 skeleton in the shared world
// frame (metres, y up, floor at y = 0; x right and z towards the video camera), a floor grid with
// 0.5 m cells, each person's pelvis trail up to the shown frame, feet on the ground marked green,
// the video camera's frustum as it turns and zooms (poses.json's per-frame camera; a camera that did not
// move is not drawn), orbit / zoom / pan
// with the mouse or fingers (OrbitControls). It draws only when something changed (frame, selection, camera, size).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

import { hex, sideColours } from "./colours.js";
import { bounds, JOINTS } from "./poses.js";
import { boneSide, H36M17_BONES, H36M17_JOINTS, PELVIS } from "./skeleton.js";

const LEFT_ANKLE = H36M17_JOINTS.indexOf("left_ankle");
const RIGHT_ANKLE = H36M17_JOINTS.indexOf("right_ankle");

const BACKGROUND = 0x1c2028;
const GRID_CELL_M = 0.5;
const BONE_RADIUS_M = 0.022;
const JOINT_RADIUS_M = 0.032;
const UP = new THREE.Vector3(0, 1, 0);
const FOV_DEG = 40;
const FOLLOW_DISTANCE_M = 4.0;
const CONTACT_COLOUR = 0x4ade80;

export function webglAvailable() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

class PersonFigure {
  /** Meshes of one track: bones (cylinders), joints (spheres), floor shadow, pelvis trail, marker. */
  constructor(track, frameCount) {
    this.track = track;
    this.group = new THREE.Group();
    const colours = sideColours(track.id);
    const materials = {
      left: new THREE.MeshLambertMaterial({ color: hex(colours.left) }),
      right: new THREE.MeshLambertMaterial({ color: hex(colours.right) }),
      mid: new THREE.MeshLambertMaterial({ color: hex(colours.mid) }),
    };
    const boneGeometry = new THREE.CylinderGeometry(BONE_RADIUS_M, BONE_RADIUS_M, 1, 10);
    this.bones = H36M17_BONES.map((bone) => {
      const mesh = new THREE.Mesh(boneGeometry, materials[boneSide(bone)]);
      this.group.add(mesh);
      return mesh;
    });
    const jointGeometry = new THREE.SphereGeometry(JOINT_RADIUS_M, 12, 8);
    const jointMaterial = new THREE.MeshLambertMaterial({ color: 0xf4f4f4 });
    this.contactMaterial = new THREE.MeshLambertMaterial({ color: CONTACT_COLOUR });
    this.jointMaterial = jointMaterial;
    this.joints = Array.from({ length: JOINTS }, () => {
      const mesh = new THREE.Mesh(jointGeometry, jointMaterial);
      this.group.add(mesh);
      return mesh;
    });
    // shadow: the bones projected on the floor
    this.shadowPositions = new Float32Array(H36M17_BONES.length * 2 * 3);
    const shadowGeometry = new THREE.BufferGeometry();
    shadowGeometry.setAttribute("position", new THREE.BufferAttribute(this.shadowPositions, 3));
    this.shadow = new THREE.LineSegments(shadowGeometry, new THREE.LineBasicMaterial({ color: 0x0b0d10 }));
    this.group.add(this.shadow);
    // pelvis trail: the pelvis of every present frame, drawn up to the shown frame
    const trail = [];
    this.trailCount = new Uint32Array(frameCount);
    for (let i = 0; i < frameCount; i++) {
      if (track.present[i]) {
        const o = (i * JOINTS + PELVIS) * 3;
        trail.push(track.joints[o], track.joints[o + 1], track.joints[o + 2]);
      }
      this.trailCount[i] = trail.length / 3;
    }
    const trailGeometry = new THREE.BufferGeometry();
    trailGeometry.setAttribute("position", new THREE.Float32BufferAttribute(trail, 3));
    this.trail = new THREE.Line(trailGeometry, new THREE.LineBasicMaterial({ color: hex(colours.left) }));
    this.group.add(this.trail);
    // floor ring under the chosen person
    this.marker = new THREE.Mesh(new THREE.RingGeometry(0.28, 0.34, 40),
      new THREE.MeshBasicMaterial({ color: hex(colours.mid), side: THREE.DoubleSide }));
    this.marker.rotation.x = -Math.PI / 2;
    this.group.add(this.marker);
  }

  show(i, selected) {
    const t = this.track;
    const here = i >= 0 && t.present[i] === 1;
    for (const m of [...this.bones, ...this.joints, this.shadow]) m.visible = here;
    this.marker.visible = here && selected;
    this.trail.geometry.setDrawRange(0, i >= 0 ? this.trailCount[i] : 0);
    if (!here) return;
    const p = (j) => {
      const o = (i * JOINTS + j) * 3;
      return new THREE.Vector3(t.joints[o], t.joints[o + 1], t.joints[o + 2]);
    };
    const pts = Array.from({ length: JOINTS }, (_, j) => p(j));
    pts.forEach((v, j) => this.joints[j].position.copy(v));
    // a foot on the ground (poses.json foot_contacts): its ankle drawn larger and green
    for (const [side, j] of [["left", LEFT_ANKLE], ["right", RIGHT_ANKLE]]) {
      const planted = Boolean(t.contacts && t.contacts[side][i]);
      this.joints[j].material = planted ? this.contactMaterial : this.jointMaterial;
      this.joints[j].scale.setScalar(planted ? 1.5 : 1);
    }
    H36M17_BONES.forEach(([a, b], k) => {
      const mesh = this.bones[k];
      const dir = new THREE.Vector3().subVectors(pts[b], pts[a]);
      const length = dir.length();
      mesh.visible = length > 1e-6;
      if (!mesh.visible) return;
      mesh.position.addVectors(pts[a], pts[b]).multiplyScalar(0.5);
      mesh.quaternion.setFromUnitVectors(UP, dir.divideScalar(length));
      mesh.scale.set(1, length, 1);
      const s = this.shadowPositions;
      s.set([pts[a].x, 0.002, pts[a].z, pts[b].x, 0.002, pts[b].z], k * 6);
    });
    this.shadow.geometry.attributes.position.needsUpdate = true;
    this.marker.position.set(pts[PELVIS].x, 0.003, pts[PELVIS].z);
  }
}

const FRUSTUM_DEPTH_M = 0.8;
const FRUSTUM_COLOUR = 0xfbbf24;

/** The video camera's frustum: lines from its centre to the picture's corners at FRUSTUM_DEPTH_M and the
 * picture's outline, turned to each frame's rotation and as wide as its focal length makes it. */
export class CameraFrustum {
  constructor(path) {
    this.path = path;
    this.segments = [0, 1, 0, 2, 0, 3, 0, 4, 1, 2, 2, 3, 3, 4, 4, 1]; // point pairs of worldCorners()
    this.positions = new Float32Array(this.segments.length * 3);
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(this.positions, 3));
    this.lines = new THREE.LineSegments(geometry, new THREE.LineBasicMaterial({ color: FRUSTUM_COLOUR }));
    this.lines.frustumCulled = false;
    this.group = new THREE.Group();
    this.group.add(this.lines);
    this.group.position.fromArray(path.centre);
  }

  /** The centre, then the picture's corners (top-left, top-right, bottom-right, bottom-left) at
   * FRUSTUM_DEPTH_M in frame i, relative to the camera centre, in world axes (camera x right, y down,
   * z forward, turned by the frame's camera -> world quaternion). */
  worldCorners(i) {
    const { width, height, rotation, focal } = this.path;
    const q = new THREE.Quaternion(rotation[i * 4 + 1], rotation[i * 4 + 2], rotation[i * 4 + 3], rotation[i * 4]);
    const x = (width / 2 / focal[i]) * FRUSTUM_DEPTH_M;
    const y = (height / 2 / focal[i]) * FRUSTUM_DEPTH_M;
    return [new THREE.Vector3(0, 0, 0), ...[[-x, -y], [x, -y], [x, y], [-x, y]].map(([cx, cy]) =>
      new THREE.Vector3(cx, cy, FRUSTUM_DEPTH_M).applyQuaternion(q))];
  }

  show(i) {
    const here = i >= 0 && i < this.path.focal.length && this.path.focal[i] > 0;
    this.group.visible = here;
    if (!here) return;
    const pts = this.worldCorners(i);
    this.segments.forEach((k, n) => pts[k].toArray(this.positions, n * 3));
    this.lines.geometry.attributes.position.needsUpdate = true;
  }
}

export class PoseViewer {
  /**
   * container: an element sized by CSS; model: parsePoses(); the canvas fills the container.
   * options.bounds {min, max}: the space to frame and lay the grid under, when the model cannot say
   * (a live view starts with no poses).
   */
  constructor(container, model, options = {}) {
    this.container = container;
    this.model = model;
    this.frame = -1;
    this.selected = null;
    this.renderer = new THREE.WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.setClearColor(BACKGROUND);
    this.canvas = this.renderer.domElement;
    this.canvas.setAttribute("aria-label", "3D view of the poses: drag to orbit, wheel or pinch to zoom");
    container.appendChild(this.canvas);

    this.scene = new THREE.Scene();
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x404050, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.2);
    sun.position.set(2, 5, 3);
    this.scene.add(sun);

    const { min, max } = options.bounds || bounds(model);
    const ok = min.every(Number.isFinite);
    const lo = ok ? min : [-1, 0, -1];
    const hi = ok ? max : [1, 1.8, 1];
    const moving = model.cameraPath && model.cameraPath.quality.some((q) => q !== "still");
    if (moving) { // the turning camera is part of the scene: keep it in view
      model.cameraPath.centre.forEach((v, a) => { lo[a] = Math.min(lo[a], v); hi[a] = Math.max(hi[a], v); });
    }
    this.centre = new THREE.Vector3((lo[0] + hi[0]) / 2, Math.max(0.9, (hi[1] - Math.max(lo[1], 0)) / 2), (lo[2] + hi[2]) / 2);
    const span = Math.max(hi[0] - lo[0], hi[2] - lo[2], hi[1], 2);
    const cells = Math.ceil((span + 2) / GRID_CELL_M / 2) * 2;
    const grid = new THREE.GridHelper(cells * GRID_CELL_M, cells, 0x5a6070, 0x383e4a);
    grid.position.set(Math.round(this.centre.x / GRID_CELL_M) * GRID_CELL_M, 0, Math.round(this.centre.z / GRID_CELL_M) * GRID_CELL_M);
    this.scene.add(grid);
    const axes = new THREE.AxesHelper(0.5);
    axes.position.set(grid.position.x - (cells * GRID_CELL_M) / 2, 0.003, grid.position.z + (cells * GRID_CELL_M) / 2);
    this.scene.add(axes);

    this.frustum = moving ? new CameraFrustum(model.cameraPath) : null;
    if (this.frustum) this.scene.add(this.frustum.group);

    this.figures = new Map();
    for (const track of model.tracks.values()) this.addTrack(track);

    this.camera = new THREE.PerspectiveCamera(FOV_DEG, 4 / 3, 0.05, 500);
    // far enough that a sphere around every joint of the video fits the view
    const radius = Math.max(1.0, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - Math.min(lo[1], 0), hi[2] - lo[2]));
    this.distance = (0.9 * radius) / Math.sin(THREE.MathUtils.degToRad(FOV_DEG / 2));
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.enableDamping = false;
    this.controls.maxPolarAngle = Math.PI * 0.495;
    this.controls.addEventListener("change", () => this.draw());
    this.resetView();

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  /** Look from the front-left (the video camera's side) and a little above, at the middle of all
   * the motion, from far enough to see all of it. */
  resetView() {
    const d = this.distance;
    const dir = new THREE.Vector3(-0.45, 0.35, 0.85).normalize();
    this.camera.position.copy(this.centre).addScaledVector(dir, d);
    this.controls.target.copy(this.centre);
    this.controls.update();
    this.draw();
  }

  /** Show one more track of the model (a person the live view has just found). */
  addTrack(track) {
    const figure = new PersonFigure(track, this.model.frameCount);
    this.figures.set(track.id, figure);
    this.scene.add(figure.group);
  }

  resize() {
    const w = Math.max(1, this.container.clientWidth);
    const h = Math.max(1, this.container.clientHeight);
    this.renderer.setSize(w, h, false);
    this.canvas.style.width = "100%";
    this.canvas.style.height = "100%";
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.draw();
  }

  setFrame(i) {
    if (i === this.frame) return;
    this.frame = i;
    this.draw();
  }

  setSelected(trackId) {
    this.selected = trackId;
    this.draw();
  }

  /** Keep the chosen person's pelvis at the centre of the view (the camera moves along). */
  setFollow(on) {
    this.follow = on;
    if (!on) {
      this.resetView();
      return;
    }
    // come close enough that one person fills most of the view's height
    const dir = new THREE.Vector3().subVectors(this.camera.position, this.controls.target).normalize();
    this.camera.position.copy(this.controls.target).addScaledVector(dir, FOLLOW_DISTANCE_M);
    this.draw();
  }

  followSelected() {
    const track = this.model.tracks.get(this.selected);
    if (!this.follow || !track || this.frame < 0 || !track.present[this.frame]) return;
    const o = (this.frame * JOINTS + PELVIS) * 3;
    const pelvis = new THREE.Vector3(track.joints[o], this.centre.y, track.joints[o + 2]);
    const shift = pelvis.sub(this.controls.target);
    this.controls.target.add(shift);
    this.camera.position.add(shift);
    this.camera.lookAt(this.controls.target);
  }

  draw() {
    if (!this.figures) return;
    this.followSelected();
    for (const [id, figure] of this.figures) figure.show(this.frame, id === this.selected);
    if (this.frustum) this.frustum.show(this.frame);
    this.renderer.render(this.scene, this.camera);
    this.container.dataset.frame = String(this.frame);
  }

  dispose() {
    this.resizeObserver.disconnect();
    this.controls.dispose();
    this.renderer.dispose();
    this.renderer.forceContextLoss(); // browsers keep few WebGL contexts: give this one back now
    this.canvas.remove();
  }
}
