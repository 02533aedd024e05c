"""The app's environment settings and the server-folder policy."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from grounded_sam.app.settings import AppSettings, load_settings
from grounded_sam.errors import InputError, OptionError
from grounded_sam.inputs.archive import ZipLimits
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS


def test_defaults_with_no_variables() -> None:
    settings = load_settings({"XDG_DATA_HOME": "/srv/xdg"})
    assert settings == AppSettings(data_dir=Path("/srv/xdg/grounded_sam"))  # a hand-made AppSettings saves no edits
    assert settings.detector == DEFAULT_DETECTOR and settings.segmenter == DEFAULT_SEGMENTER
    assert settings.device == "auto"
    assert settings.batch_roots == ()  # a public Space exposes no server files unless told to
    assert settings.max_upload_bytes == 200 * 1024 * 1024
    assert settings.zip_limits == ZipLimits()


def test_every_variable_is_read(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env = {
        "GROUNDED_SAM_DETECTOR": " /models/florence ",
        "GROUNDED_SAM_SEGMENTER": "sam2.1-hiera-tiny",
        "GROUNDED_SAM_DEVICE": "CUDA:1",
        "GROUNDED_SAM_BATCH_ROOTS": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}{os.pathsep}",
        "GROUNDED_SAM_MAX_UPLOAD_MB": "2.5",
        "GROUNDED_SAM_QUEUE_SIZE": "4",
        "GROUNDED_SAM_MAX_BATCH_IMAGES": "1_000",
        "GROUNDED_SAM_MAX_VIDEO_FRAMES": "300",
        "GROUNDED_SAM_ZIP_MAX_MEMBERS": "10",
        "GROUNDED_SAM_ZIP_MAX_MB": "1",
        "GROUNDED_SAM_ZIP_MAX_RATIO": "50",
        "GROUNDED_SAM_TORCH_THREADS": "3",
    }
    settings = load_settings(env)
    assert settings.detector == "/models/florence"
    assert settings.segmenter == "sam2.1-hiera-tiny"
    assert settings.device == "cuda:1"
    assert settings.batch_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    assert settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert settings.queue_size == 4
    assert settings.max_batch_images == 1000
    assert settings.max_video_frames == 300
    assert settings.torch_threads == 3
    assert settings.zip_limits == ZipLimits(max_members=10, max_total_bytes=1024 * 1024, max_ratio=50.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QUEUE_SIZE", "0", "GROUNDED_SAM_QUEUE_SIZE must be a whole number >= 1, but got '0'"),
        ("QUEUE_SIZE", "ten", "GROUNDED_SAM_QUEUE_SIZE must be a whole number"),
        ("MAX_BATCH_IMAGES", "-3", "GROUNDED_SAM_MAX_BATCH_IMAGES must be a whole number"),
        ("MAX_VIDEO_FRAMES", "0", "GROUNDED_SAM_MAX_VIDEO_FRAMES must be a whole number >= 1, but got '0'"),
        ("TORCH_THREADS", "-1", "GROUNDED_SAM_TORCH_THREADS must be a whole number >= 0, but got '-1'"),
        ("ZIP_MAX_MEMBERS", "1.5", "GROUNDED_SAM_ZIP_MAX_MEMBERS must be a whole number"),
        ("MAX_UPLOAD_MB", "0", "GROUNDED_SAM_MAX_UPLOAD_MB must be a number above 0"),
        ("MAX_UPLOAD_MB", "lots", "GROUNDED_SAM_MAX_UPLOAD_MB must be a number above 0"),
        ("ZIP_MAX_MB", "inf", "GROUNDED_SAM_ZIP_MAX_MB must be a number above 0"),
        ("ZIP_MAX_RATIO", "1", "GROUNDED_SAM_ZIP_MAX_RATIO must be a number above 1"),
        ("DEVICE", "gpu", "GROUNDED_SAM_DEVICE must be auto, cpu, cuda, cuda:N or mps, but got 'gpu'"),
        ("BATCH_ROOTS", "/no/such/folder", "names '/no/such/folder', which is not an existing folder"),
        ("BATCH_ROOTS", "/", "names the file system root"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        load_settings({f"GROUNDED_SAM_{name}": value})


def test_saved_edits_settings(tmp_path: Path) -> None:
    settings = load_settings({"GROUNDED_SAM_DATA_DIR": str(tmp_path / "edits"), "GROUNDED_SAM_EDIT_RETENTION_HOURS": "0.5"})
    assert (settings.data_dir, settings.edit_retention_hours, settings.saves_edits) == (tmp_path / "edits", 0.5, True)
    assert load_settings({}).edit_retention_hours == 168 and load_settings({}).saves_edits
    assert not load_settings({"GROUNDED_SAM_EDIT_RETENTION_HOURS": "0"}).saves_edits
    assert not AppSettings().saves_edits
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match="GROUNDED_SAM_DATA_DIR names .*, which is not a folder"):
        load_settings({"GROUNDED_SAM_DATA_DIR": str(tmp_path / "file")})
    with pytest.raises(OptionError, match="GROUNDED_SAM_EDIT_RETENTION_HOURS must be a number above 0"):
        load_settings({"GROUNDED_SAM_EDIT_RETENTION_HOURS": "-1"})


def test_model_choices_offer_the_registry_and_a_local_default_by_name_only() -> None:
    registry = load_settings({})
    assert [v for _, v in registry.model_choices("detector")] == list(DETECTORS)
    assert [v for _, v in registry.model_choices("segmenter")] == list(SEGMENTERS)

    local = AppSettings(detector="/srv/weights/florence-ft", segmenter="/srv/weights/sam2/ft.pt")
    label, value = local.model_choices("detector")[0]
    assert (label, value) == ("florence-ft (local)", "/srv/weights/florence-ft")
    assert "/srv" not in local.model_choices("segmenter")[0][0]


def test_check_model_accepts_offered_choices_only() -> None:
    settings = AppSettings(detector="/srv/weights/florence-ft")
    assert settings.check_model("detector", None) == "/srv/weights/florence-ft"
    assert settings.check_model("detector", "") == "/srv/weights/florence-ft"
    assert settings.check_model("detector", "florence-2-large") == "florence-2-large"
    assert settings.check_model("segmenter", "sam2.1-hiera-tiny") == "sam2.1-hiera-tiny"
    with pytest.raises(OptionError, match="Unknown detector '/etc/passwd': expected one of"):
        settings.check_model("detector", "/etc/passwd")


def test_server_folders_are_off_by_default() -> None:
    with pytest.raises(InputError, match="turned off.*GROUNDED_SAM_BATCH_ROOTS"):
        AppSettings().resolve_server_folder("/tmp")


def test_server_folder_inside_a_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "site-a" / "day1").mkdir(parents=True)
    settings = load_settings({"GROUNDED_SAM_BATCH_ROOTS": str(root)})

    expected = (root / "site-a" / "day1").resolve()
    assert settings.resolve_server_folder("site-a/day1") == expected
    assert settings.resolve_server_folder(f" {root / 'site-a' / 'day1'} ") == expected
    assert settings.resolve_server_folder(str(root)) == root.resolve()


@pytest.mark.parametrize("asked", ["..", "../secret", "site-a/../../secret", "{tmp}/secret", "missing"])
def test_server_folder_outside_the_roots_is_refused(tmp_path: Path, asked: str) -> None:
    root = tmp_path / "data"
    (root / "site-a").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    settings = load_settings({"GROUNDED_SAM_BATCH_ROOTS": str(root)})

    with pytest.raises(InputError, match="is not a folder inside the allowed roots"):
        settings.resolve_server_folder(asked.format(tmp=tmp_path))


def test_a_symlink_out_of_a_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret", target_is_directory=True)
    settings = load_settings({"GROUNDED_SAM_BATCH_ROOTS": str(root)})

    with pytest.raises(InputError, match="not a folder inside the allowed roots"):
        settings.resolve_server_folder("escape")
    assert settings.inside_roots(root / "escape") is False
    assert settings.inside_roots(root / "anything.jpg") is True
