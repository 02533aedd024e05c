"""Clips in: probing, streamed decoding with time ranges and caps, frame folders, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grounded_sam.errors import VideoLoadError
from grounded_sam.inputs.video import frame_range, frames_to_track, is_video_path, iter_frames, probe_video
from tests.fakes import MovingSquares, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = MovingSquares(frames=12)
    return write_clip(tmp_path_factory.mktemp("clip") / "squares.mp4", [scene.frame(i) for i in range(12)], fps=10)


def test_the_real_clip_is_probed_without_decoding(photos: Path) -> None:
    info = probe_video(photos / "bedroom.mp4")
    assert (info.width, info.height, info.codec, info.frame_count) == (960, 540, "h264", 200)
    assert info.fps == pytest.approx(30.0)


def test_frames_stream_in_order_as_rgb(clip: Path) -> None:
    frames = list(iter_frames(clip))
    assert [i for i, _ in frames] == list(range(12))
    assert all(rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8 for _, rgb in frames)
    # The encoder is lossy: the square's colour survives closely, the background too.
    first = frames[0][1]
    assert abs(int(first[14, 12, 0]) - 200) < 25 and abs(int(first[60, 4, 0]) - 30) < 25


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start_s": 0.5}, list(range(5, 12))),  # 10 fps: frame 5 is at 0.5 s
        ({"end_s": 0.3}, [0, 1, 2]),
        ({"start_s": 0.2, "end_s": 0.6}, [2, 3, 4, 5]),
        ({"max_frames": 4}, [0, 1, 2, 3]),
        ({"start_s": 0.4, "max_frames": 3}, [4, 5, 6]),
        ({"max_frames": 6, "first_index": 3}, [3, 4, 5]),  # a resumed run: the cap still counts from the start
        ({"max_frames": 100}, list(range(12))),
    ],
)
def test_time_ranges_and_caps(clip: Path, kwargs: dict, expected: list[int]) -> None:
    assert [i for i, _ in iter_frames(clip, **kwargs)] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_s": -1}, "start time must be >= 0"),
        ({"start_s": 2, "end_s": 1}, "must come after the start time"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
    ],
)
def test_bad_ranges_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(VideoLoadError, match=message):
        frame_range(30.0, **kwargs)


def test_a_range_past_the_end_says_there_are_no_frames(clip: Path) -> None:
    with pytest.raises(VideoLoadError, match="no frames between frames 50"):
        list(iter_frames(clip, start_s=5))


def test_a_folder_of_frames_is_a_clip(tmp_path: Path) -> None:
    from PIL import Image

    scene = MovingSquares()
    for i in range(5):
        Image.fromarray(scene.frame(i)).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert probe_video(tmp_path).frame_count == 5
    frames = list(iter_frames(tmp_path, start_s=2 / 30))  # 30 fps assumed: frame 2 is at 2/30 s
    assert [i for i, _ in frames] == [2, 3, 4] and np.array_equal(frames[0][1], scene.frame(2))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: _write(d / "notes.mp4", b"this is text, not a video"), "is not a video"),
        (lambda d: _write(d / "cut.mp4", (Path(__file__).parents[2] / "examples" / "bedroom.mp4").read_bytes()[:4000]),
         "is not a video|no frames|corrupt"),
        (lambda d: d, "holds no frame images"),
    ],
    ids=["missing", "text", "truncated", "empty-folder"],
)
def test_bad_clips_say_what_is_wrong(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(VideoLoadError, match=message):
        list(iter_frames(path))


def test_a_clip_over_the_pixel_cap_is_refused(clip: Path) -> None:
    with pytest.raises(VideoLoadError, match="over the limit of 1000 pixels"):
        list(iter_frames(clip, max_pixels=1000))


def test_an_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoLoadError, match="holds no video stream"):
        probe_video(path)


def test_video_suffixes() -> None:
    assert is_video_path("a/B.MP4") and is_video_path("c.webm") and not is_video_path("d.jpg")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_matroska_clip_declares_no_length_so_it_is_estimated(tmp_path: Path) -> None:
    scene = MovingSquares(frames=12)
    path = write_clip(tmp_path / "squares.mkv", [scene.frame(i) for i in range(12)], fps=10)
    info = probe_video(path)
    assert info.frame_count is not None and abs(info.frame_count - 12) <= 1
    assert frames_to_track(info, start_s=0.5) == (5, None, info.frame_count - 5)
    assert frames_to_track(info, max_frames=3) == (0, 3, 3)
