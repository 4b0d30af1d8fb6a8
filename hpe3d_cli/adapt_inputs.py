"""The 2D that ``hpe3d adapt`` learns from: poses.json files, or the poses.json of finished jobs on a gateway."""
from __future__ import annotations

import json
from pathlib import Path

from hpe3d_cli.client import GatewayClient, GatewayError
from hpe3d_cli.keypoints_io import KeypointFormatError, read_keypoints

POSES_ARTIFACT = "poses.json"


class AdaptInputError(ValueError):
    """An input names neither a readable keypoint file nor a finished job with 2D poses."""


def job_poses_document(client: GatewayClient, job_id: str) -> dict:
    """The poses.json of job ``job_id`` (it must have succeeded)."""
    try:
        job = client.job(job_id)
    except GatewayError as exc:
        raise AdaptInputError(f"{job_id}: neither a file nor a job the gateway knows ({exc})") from exc
    if job.state.value != "succeeded":
        raise AdaptInputError(f"job {job_id} is {job.state.value}: only finished jobs have 2D poses to adapt on")
    link = next((a for a in job.links.artifacts if Path(a.name).name == POSES_ARTIFACT), None)
    if link is None:
        raise AdaptInputError(f"job {job_id} has no {POSES_ARTIFACT} artefact")
    resp = client.http.get(link.url)
    if resp.status_code != 200:
        raise AdaptInputError(f"job {job_id}: downloading {POSES_ARTIFACT} answered {resp.status_code}")
    return resp.json()


def load_tracks(inputs: list[str], url: str | None, key: str = ""):
    """Every person track of every input as :class:`training.adapt.Track2D`; a path that exists is read as a
    keypoint file, anything else is a job id on the gateway at ``url``."""
    from training.adapt import track_from_pixels

    tracks = []
    client = GatewayClient(url, key) if url else None
    try:
        for item in inputs:
            path = Path(item)
            if path.is_file():
                try:
                    doc = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    raise AdaptInputError(f"cannot read {path}: {exc}") from exc
                source = str(path)
            elif client is not None:
                doc, source = job_poses_document(client, item), f"job {item}"
            else:
                raise AdaptInputError(f"{item}: no such file (to adapt on a job's 2D, give the gateway's --url)")
            try:
                parsed = read_keypoints(doc)
            except KeypointFormatError as exc:
                raise AdaptInputError(f"{source}: {exc}") from exc
            tracks += [track_from_pixels(source, t.track_id, t.keypoints, parsed.width, parsed.height)
                       for t in parsed.tracks]
    finally:
        if client is not None:
            client.close()
    return tracks
