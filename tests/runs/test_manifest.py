"""The run manifest: settings check, records, repair after a kill, locking, --force."""

from __future__ import annotations

import json
import logging

import pytest

from grounded_sam.errors import OutputFolderError
from grounded_sam.export.base import ImageRecord
from grounded_sam.runs.manifest import MANIFEST_NAME, Manifest, remove_managed_outputs, settings_differences

SETTINGS = {"categories": "truck, tire", "formats": ["coco"], "box_chunk_size": None}


def _record(source: str, stem: str, status: str = "ok", sha: str = "abc") -> ImageRecord:
    return ImageRecord(source=source, stem=stem, status=status, sha256=sha, outputs=(f"labels/{stem}.json",))


def test_a_new_manifest_starts_with_the_settings_and_appends_records(tmp_path):
    with Manifest.open(tmp_path, SETTINGS) as manifest:
        manifest.record(_record("/in/a.jpg", "a"))
        manifest.record(_record("/in/b.jpg", "b", status="failed"))
    lines = [json.loads(line) for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert lines[0]["kind"] == "run" and lines[0]["settings"] == SETTINGS
    assert [(l["source"], l["status"]) for l in lines[1:]] == [("/in/a.jpg", "ok"), ("/in/b.jpg", "failed")]

    with Manifest.open(tmp_path, SETTINGS) as manifest:
        assert manifest.is_done("/in/a.jpg", "abc")
        assert not manifest.is_done("/in/a.jpg", "changed")  # the file changed: label it again
        assert not manifest.is_done("/in/b.jpg", "abc")  # failed before: retried
        assert manifest.stems() == {"/in/a.jpg": "a", "/in/b.jpg": "b"}
        assert [r.stem for r in manifest.dataset_records()] == ["a"]
        manifest.record(_record("/in/b.jpg", "b"))  # the retry worked: the last line counts
        assert [r.stem for r in manifest.dataset_records()] == ["a", "b"]


def test_other_settings_are_refused_naming_what_differs(tmp_path):
    Manifest.open(tmp_path, SETTINGS).close()
    with pytest.raises(OutputFolderError) as error:
        Manifest.open(tmp_path, {**SETTINGS, "categories": "truck"})
    message = str(error.value)
    assert 'categories: "truck, tire" -> "truck"' in message and "--force" in message and "formats" not in message
    # A setting that changes no output is not a reason to refuse.
    Manifest.open(tmp_path, {**SETTINGS, "box_chunk_size": 16}).close()


def test_settings_differences_lists_added_and_removed_keys():
    assert settings_differences({"a": 1, "b": (1, 2)}, {"b": [1, 2], "c": True}) == ["a: 1 -> null", "c: null -> true"]


def test_force_deletes_only_managed_outputs(tmp_path):
    with Manifest.open(tmp_path, SETTINGS) as manifest:
        manifest.record(_record("/in/a.jpg", "a"))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine").mkdir()
    with Manifest.open(tmp_path, {**SETTINGS, "categories": "car"}, force=True) as manifest:
        assert manifest.stems() == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "mine", "notes.txt"]


def test_outputs_without_a_manifest_are_never_touched(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "holiday.jpg").write_bytes(b"precious")
    for force in (False, True):
        with pytest.raises(OutputFolderError, match="images/ but no manifest.jsonl"):
            Manifest.open(tmp_path, SETTINGS, force=force)
    assert (tmp_path / "images" / "holiday.jpg").read_bytes() == b"precious"


def test_a_line_cut_short_by_a_kill_is_ignored_and_repaired(tmp_path, caplog):
    with Manifest.open(tmp_path, SETTINGS) as manifest:
        manifest.record(_record("/in/a.jpg", "a"))
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(path.read_bytes() + b'{"kind": "image", "source": "/in/b.j')
    with caplog.at_level(logging.WARNING), Manifest.open(tmp_path, SETTINGS) as manifest:
        assert list(manifest.stems()) == ["/in/a.jpg"]
        manifest.record(_record("/in/b.jpg", "b"))
    assert "unfinished last line" in caplog.text
    assert [json.loads(line)["kind"] for line in path.read_text().splitlines()] == ["run", "image", "image"]


def test_leftover_temporary_files_are_removed(tmp_path):
    Manifest.open(tmp_path, SETTINGS).close()
    leftovers = [tmp_path / "labels" / ".a.json.x1y2.tmp", tmp_path / "yolo" / "detect" / "labels" / ".a.txt.zz.tmp",
                 tmp_path / f".{MANIFEST_NAME}.q.tmp"]
    keep = [tmp_path / "labels" / "a.json", tmp_path / ".mine.tmp.txt"]
    for path in leftovers + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    Manifest.open(tmp_path, SETTINGS).close()
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in keep)


def test_two_runs_never_share_a_folder(tmp_path):
    pytest.importorskip("fcntl", reason="the advisory lock is POSIX-only")
    with Manifest.open(tmp_path, SETTINGS), pytest.raises(OutputFolderError, match="Another run is writing"):
        Manifest.open(tmp_path, SETTINGS)
    Manifest.open(tmp_path, SETTINGS).close()  # released when the first run ends


def test_a_manifest_it_cannot_read_is_refused(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("not json\n")
    with pytest.raises(OutputFolderError, match="not a manifest"):
        Manifest.open(tmp_path, SETTINGS)


def test_remove_managed_outputs_reports_what_it_removed(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / MANIFEST_NAME).write_text("")
    assert remove_managed_outputs(tmp_path) == [MANIFEST_NAME, "coco"]
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_during_a_manifest_write_waits_until_the_line_is_recorded(monkeypatch):
    """Ctrl-C landing while a line is being synced must not leave it on disk but not in memory."""
    import signal

    from grounded_sam.runs.manifest import _interrupts_deferred

    events = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
    with pytest.raises(KeyboardInterrupt):
        with _interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            events.append("after the signal, still inside")
    assert events == ["after the signal, still inside"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_default():
    from grounded_sam.runs.manifest import SETTINGS_ADDED_LATER

    assert SETTINGS_ADDED_LATER["precision"] == "auto"
    before = {"categories": "truck", "detector": "florence-2-base"}
    assert settings_differences(before, {**before, "precision": "auto"}) == []
    assert settings_differences(before, {**before, "precision": "bf16"}) == ['precision: "auto" -> "bf16"']
    assert settings_differences({**before, "precision": "fp32"}, {**before, "precision": "auto"}) == [
        'precision: "fp32" -> "auto"']
