"""Cut and damaged files: the frames a player shows are the frames probe counts, decode yields and
times. Fixtures are made here from the office clip: H.264 with B-frames, cut without re-encoding
(with an edit list, as a phone trims; at a packet that is not a keyframe; at an open-GOP keyframe)
and truncated (index at the end: nothing plays; index first: the first part plays)."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.common.mp4_index import index_missing, top_level_boxes
from services.decoder.probe import probe_video
from services.decoder.segments import decode_segment
from tests.video_fixtures import (PEOPLE_CLIP, cut_at_packet, cut_copy, encode_h264, read_frames,
                                  truncate)

FPS = 30
CUT_FRAME = 11  # inside the group of pictures that starts at frame 8


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cuts")
    frames = read_frames(PEOPLE_CLIP)
    files = {"source": encode_h264(d / "source.mp4", frames, fps=FPS, gop=8),
             "open_gop": encode_h264(d / "open_gop.mp4", frames, fps=FPS, gop=12, open_gop=True),
             "faststart": encode_h264(d / "faststart.mp4", frames * 2, fps=FPS, gop=8, faststart=True)}
    files["trimmed"] = d / "trimmed.mp4"
    files["hidden"] = cut_copy(files["source"], files["trimmed"], CUT_FRAME / FPS)
    files["no_keyframe_start"] = d / "no_keyframe_start.mp4"
    cut_at_packet(files["source"], files["no_keyframe_start"], 3)
    files["open_gop_cut"] = d / "open_gop_cut.mp4"
    second_key = [i for i, p in enumerate(_packets(files["open_gop"])) if p[1]][1]
    cut_at_packet(files["open_gop"], files["open_gop_cut"], second_key)
    files["no_index"] = truncate(files["source"], d / "no_index.mp4", 0.6)
    files["cut_short"] = truncate(files["faststart"], d / "cut_short.mp4", 0.5)
    files["decoded_source"] = frames_of(files["source"])
    return files


def _packets(path: Path) -> list[tuple[int, bool, bool]]:
    """(pts, keyframe, discard) of every packet in decode order."""
    with av.open(str(path)) as c:
        return [(p.pts, bool(p.is_keyframe), bool(p.is_discard)) for p in c.demux(c.streams.video[0]) if p.size]


def frames_of(path: Path) -> list[np.ndarray]:
    """What FFmpeg decodes from ``path`` straight through, up to the first undecodable data."""
    out = []
    with av.open(str(path)) as c:
        try:
            for frame in c.decode(video=0):
                out.append(frame.to_ndarray(format="bgr24"))
        except av.FFmpegError:
            pass
    return out


def jpeg(segment, i: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(segment.jpeg[i], np.uint8), cv2.IMREAD_COLOR)


def closest_source_frame(image: np.ndarray, source: list[np.ndarray]) -> int:
    errors = [np.abs(image.astype(int) - s.astype(int)).mean() for s in source]
    return int(np.argmin(errors))


def all_segments(path: Path, count: int, size: int = 10) -> list:
    return [decode_segment(str(path), start, size, 640) for start in range(0, count, size)]


def test_fixtures_are_what_they_claim(made):
    source = _packets(made["source"])
    assert any(pts < prev for (prev, _, _), (pts, _, _) in zip(source, source[1:])), "no B-frames"
    trimmed = _packets(made["trimmed"])
    assert not trimmed[0][2] or trimmed[0][1]  # starts at a keyframe ...
    assert sum(d for _, _, d in trimmed) == made["hidden"] == CUT_FRAME - 8  # ... hidden up to the cut
    assert not _packets(made["no_keyframe_start"])[0][1]
    open_cut = _packets(made["open_gop_cut"])
    assert open_cut[0][1] and any(pts < open_cut[0][0] for pts, _, _ in open_cut)  # B-frames shown first
    with av.open(str(made["cut_short"])) as c:
        assert c.streams.video[0].frames == 48


def test_edit_list_trim_counts_decodes_and_times_only_shown_frames(made):
    info = probe_video(str(made["trimmed"]))
    shown = 24 - CUT_FRAME
    assert info.frame_count == shown == len(frames_of(made["trimmed"]))
    assert info.announced_frame_count == shown and info.warnings == ()
    assert info.timestamps_s[0] == 0.0 and info.timestamps_s[-1] == pytest.approx((shown - 1) / FPS)
    assert info.fps == pytest.approx(FPS) and info.duration_s == pytest.approx(shown / FPS)
    segments = all_segments(made["trimmed"], info.frame_count)
    assert sum(len(s.jpeg) for s in segments) == shown
    # the first shown frame is the source's frame at the cut, not the keyframe before it
    source = made["decoded_source"]
    assert closest_source_frame(jpeg(segments[0], 0), source) == CUT_FRAME
    assert closest_source_frame(jpeg(segments[-1], len(segments[-1].jpeg) - 1), source) == 23
    assert list(segments[1].timestamps_s) == pytest.approx([(10 + i) / FPS for i in range(len(segments[1].jpeg))])


def test_segment_in_the_middle_of_a_trimmed_clip_is_the_right_frames(made):
    segment = decode_segment(str(made["trimmed"]), 4, 3, 640)
    source = made["decoded_source"]
    assert [closest_source_frame(jpeg(segment, i), source) for i in range(3)] == [15, 16, 17]


def test_packets_before_the_first_keyframe_are_not_frames(made):
    path = made["no_keyframe_start"]
    info = probe_video(str(path))
    decodable = len(frames_of(path))
    assert info.frame_count == decodable == 16  # the group that starts at source frame 8 onwards
    assert info.announced_frame_count == 21
    assert info.warnings and "5 of 21 frames" in info.warnings[0]
    assert info.timestamps_s[0] == 0.0
    segments = all_segments(path, info.frame_count, 7)
    assert sum(len(s.jpeg) for s in segments) == 16
    assert closest_source_frame(jpeg(segments[0], 0), made["decoded_source"]) == 8


def test_b_frames_shown_before_the_first_keyframe_are_skipped(made):
    path = made["open_gop_cut"]
    info = probe_video(str(path))
    assert info.frame_count == len(frames_of(path)) == 12
    assert info.announced_frame_count > info.frame_count
    assert sum(len(s.jpeg) for s in all_segments(path, info.frame_count, 5)) == 12


def test_truncated_file_without_its_index_is_refused_with_that_reason(made):
    path = made["no_index"]
    assert [b.type for b in top_level_boxes(str(path))][-1] == "mdat" and index_missing(str(path))
    with pytest.raises(InvalidInput, match=r"^truncated: the index is missing"):
        probe_video(str(path))
    with pytest.raises(InvalidInput, match=r"^truncated: the index is missing"):
        decode_segment(str(path), 0, 4, 640)


def test_truncated_file_that_plays_gives_its_frames_and_says_how_many_are_missing(made):
    path = made["cut_short"]
    info = probe_video(str(path))
    assert 0 < info.frame_count < 48
    assert info.frame_count == len(frames_of(path))
    assert info.announced_frame_count == 48
    missing = 48 - info.frame_count
    assert info.warnings == (f"truncated: {missing} of 48 announced frames were missing; "
                             f"the job uses the {info.frame_count} frames the file holds",)
    assert sum(len(s.jpeg) for s in all_segments(path, info.frame_count, 16)) == info.frame_count


def test_whole_files_have_no_warnings_and_their_index_present(made):
    for name in ("source", "faststart"):
        info = probe_video(str(made[name]))
        assert info.warnings == () and info.frame_count == info.announced_frame_count
        assert not index_missing(str(made[name]))


def test_index_walker_ignores_files_that_are_not_mp4(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("moov mdat, but not boxes\n")
    assert top_level_boxes(str(text)) == [] and not index_missing(str(text))
    big = tmp_path / "large_size.mp4"  # 64-bit box size, box cut short
    big.write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\x00\x00\x00\x01mdat" +
                    (1 << 20).to_bytes(8, "big") + b"\x00" * 64)
    boxes = top_level_boxes(str(big))
    assert [(b.type, b.complete) for b in boxes] == [("ftyp", True), ("mdat", False)]
    assert boxes[1].size == 1 << 20 and index_missing(str(big))


def test_every_frame_of_a_b_frame_clip_is_found_by_seeking(made):
    """Seeking by a frame's pts would land on the next keyframe (the MP4 demuxer seeks by dts,
    which runs ahead with B-frames); each 1-frame segment must still be exactly its frame."""
    source = made["decoded_source"]
    for start in range(24):
        segment = decode_segment(str(made["source"]), start, 1, 640)
        assert closest_source_frame(jpeg(segment, 0), source) == start
