"""Tests for grounded_sam.models.weights: the resolution order (path, models/, HF cache, download) and its errors.

Nothing here touches the network or the real caches: every test points GROUNDED_SAM_MODELS_DIR,
HF_HUB_CACHE and HF_HOME into tmp_path, and downloads are monkeypatched.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest

from grounded_sam.errors import GroundedSamError, ModelNotFoundError, UnknownModelError
from grounded_sam.models import weights
from grounded_sam.models.registry import DetectorSpec, SegmenterSpec, list_models
from grounded_sam.models.weights import (
    download_to_models_dir,
    hf_cache_dir,
    looks_like_path,
    resolve_detector,
    resolve_segmenter,
)

SNAPSHOT_HASH = "0123456789abcdef0123456789abcdef01234567"
BASE_PLUS_CONFIG_TAIL = ("configs", "sam2.1", "sam2.1_hiera_b+.yaml")
DOWNLOAD_HINT = "python -m grounded_sam download"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf"


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models_dir: Path, hf_cache: Path
) -> None:
    """Point every place the resolver looks into tmp_path; forbid real downloads by default."""
    monkeypatch.setenv("GROUNDED_SAM_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # looks_like_path checks Path(text).exists() relative to cwd

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried a real download: {args} {kwargs}")

    monkeypatch.setattr(weights, "fetch_to_cache", no_network)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def make_detector_dir(path: Path, weights_file: str = "model.safetensors") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / weights_file).write_bytes(b"")
    return path


def make_hf_cache_entry(cache: Path, repo_id: str, files: list[str]) -> Path:
    """Lays out a Hugging Face cache entry by hand: refs/main -> snapshots/<hash>/<files>."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / SNAPSHOT_HASH
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}" if name.endswith(".json") else "")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(SNAPSHOT_HASH)
    return snapshot


def make_file(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_base_plus_package_config(config: Path) -> None:
    assert config.is_file()
    assert config.parts[-3:] == BASE_PLUS_CONFIG_TAIL


# --------------------------------------------------------------------------- environment helpers


def test_hf_cache_dir_prefers_hf_hub_cache(hf_cache: Path) -> None:
    assert hf_cache_dir() == str(hf_cache)


def test_hf_cache_dir_falls_back_to_hf_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    assert Path(hf_cache_dir()) == tmp_path / "hf_home" / "hub"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("", False), ("no", False)],
)
def test_hub_offline_reads_env_now(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert weights.hub_offline() is expected


def test_project_models_dir_honours_override(models_dir: Path) -> None:
    assert weights.project_models_dir() == models_dir


# --------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("weights_file", ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"])
def test_detector_found_in_models_dir(models_dir: Path, weights_file: str) -> None:
    folder = make_detector_dir(models_dir / "florence-2-base", weights_file)
    found = resolve_detector("florence-2-base")
    assert (found.path, found.source, found.name) == (folder, "models-dir", "florence-2-base")


def test_detector_found_in_hf_cache(hf_cache: Path) -> None:
    snapshot = make_hf_cache_entry(
        hf_cache, "florence-community/Florence-2-base", ["config.json", "model.safetensors"]
    )
    found = resolve_detector("florence-2-base")
    assert found.source == "hf-cache"
    assert found.path.resolve() == snapshot.resolve()
    assert found.name == "florence-2-base"


def test_detector_models_dir_beats_hf_cache(models_dir: Path, hf_cache: Path) -> None:
    folder = make_detector_dir(models_dir / "florence-2-base")
    make_hf_cache_entry(hf_cache, "florence-community/Florence-2-base", ["config.json", "model.safetensors"])
    found = resolve_detector("florence-2-base")
    assert (found.path, found.source) == (folder, "models-dir")


def test_detector_cache_without_weights_is_not_used(hf_cache: Path) -> None:
    make_hf_cache_entry(hf_cache, "florence-community/Florence-2-base", ["config.json"])
    with pytest.raises(ModelNotFoundError):
        resolve_detector("florence-2-base")


def test_detector_models_dir_folder_without_weights_is_skipped(models_dir: Path) -> None:
    (models_dir / "florence-2-base").mkdir(parents=True)
    (models_dir / "florence-2-base" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError):
        resolve_detector("florence-2-base")


def test_detector_explicit_models_dir_argument(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    folder = make_detector_dir(other / "florence-2-large")
    found = resolve_detector("florence-2-large", models_dir=other)
    assert (found.path, found.source, found.name) == (folder, "models-dir", "florence-2-large")


def test_detector_offline_nothing_found_message(models_dir: Path, hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_detector("florence-2-base")
    message = str(info.value)
    assert str(models_dir / "florence-2-base") in message
    assert str(hf_cache) in message
    assert "skipped because HF_HUB_OFFLINE is set" in message
    assert f"{DOWNLOAD_HINT} florence-2-base" in message
    assert isinstance(info.value, GroundedSamError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.usefixtures("online")
def test_detector_download_when_nothing_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fetched = make_detector_dir(tmp_path / "fetched")
    calls: list[DetectorSpec | SegmenterSpec] = []

    def fake_fetch(spec: DetectorSpec | SegmenterSpec) -> Path:
        calls.append(spec)
        return fetched

    monkeypatch.setattr(weights, "fetch_to_cache", fake_fetch)
    found = resolve_detector("florence-2-base")
    assert (found.path, found.source, found.name) == (fetched, "download", "florence-2-base")
    assert [spec.repo_id for spec in calls] == ["florence-community/Florence-2-base"]


@pytest.mark.usefixtures("online")
def test_detector_download_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fetch(spec: DetectorSpec | SegmenterSpec) -> Path:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(weights, "fetch_to_cache", failing_fetch)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_detector("florence-2-base")
    message = str(info.value)
    assert "failed (ConnectionError: no route to host)" in message
    assert f"{DOWNLOAD_HINT} florence-2-base" in message


@pytest.mark.usefixtures("online")
def test_detector_download_not_allowed_by_caller() -> None:
    # fetch_to_cache is the autouse fixture's AssertionError: it must not be called.
    with pytest.raises(ModelNotFoundError, match="not allowed by the caller"):
        resolve_detector("florence-2-base", allow_download=False)


def test_detector_direct_path(tmp_path: Path) -> None:
    folder = make_detector_dir(tmp_path / "my-florence")
    found = resolve_detector(str(folder))
    assert (found.path, found.source, found.name) == (folder, "path", "my-florence")


def test_detector_direct_pathlike(tmp_path: Path) -> None:
    folder = make_detector_dir(tmp_path / "my-florence")
    assert resolve_detector(folder).source == "path"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "missing", "nothing is there"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "that folder lacks them"),
        (lambda root: make_file(root / "config-only" / "config.json").parent, "that folder lacks them"),
    ],
    ids=["missing", "empty-folder", "config-only"],
)
def test_detector_bad_path(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ModelNotFoundError, match=expected) as info:
        resolve_detector(str(path))
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- segmenters


@pytest.mark.parametrize("relative", ["sam2/sam2.1_hiera_base_plus.pt", "sam2.1_hiera_base_plus.pt"])
def test_segmenter_found_in_models_dir(models_dir: Path, relative: str) -> None:
    checkpoint = make_file(models_dir / relative)
    found = resolve_segmenter("sam2.1-hiera-base-plus")
    assert (found.checkpoint, found.source, found.name) == (checkpoint, "models-dir", "sam2.1-hiera-base-plus")
    assert_base_plus_package_config(found.config)


def test_segmenter_sam2_subfolder_wins_over_flat(models_dir: Path) -> None:
    nested = make_file(models_dir / "sam2" / "sam2.1_hiera_base_plus.pt")
    make_file(models_dir / "sam2.1_hiera_base_plus.pt")
    assert resolve_segmenter("sam2.1-hiera-base-plus").checkpoint == nested


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_segmenter_yaml_beside_checkpoint_wins(models_dir: Path, suffix: str) -> None:
    checkpoint = make_file(models_dir / "sam2" / "sam2.1_hiera_base_plus.pt")
    beside = make_file(checkpoint.with_suffix(suffix), "model: {}\n")
    found = resolve_segmenter("sam2.1-hiera-base-plus")
    assert found.config == beside


def test_segmenter_local_path_with_yaml(tmp_path: Path) -> None:
    checkpoint = make_file(tmp_path / "custom.pt")
    config = make_file(tmp_path / "custom.yaml", "model: {}\n")
    found = resolve_segmenter(str(checkpoint))
    assert (found.checkpoint, found.config, found.source, found.name) == (checkpoint, config, "path", "custom")


def test_segmenter_local_path_with_published_name_uses_package_config(tmp_path: Path) -> None:
    checkpoint = make_file(tmp_path / "sam2.1_hiera_base_plus.pt")
    found = resolve_segmenter(checkpoint)
    assert found.source == "path"
    assert_base_plus_package_config(found.config)


def test_segmenter_local_path_without_config(tmp_path: Path) -> None:
    checkpoint = make_file(tmp_path / "custom.pt")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_segmenter(str(checkpoint))
    message = str(info.value)
    assert str(tmp_path / "custom.yaml") in message
    assert ".yaml" in message


def test_segmenter_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nothing is there"):
        resolve_segmenter(str(tmp_path / "nope.pt"))


def test_segmenter_yaml_given_as_checkpoint_is_rejected(tmp_path: Path) -> None:
    config = make_file(tmp_path / "custom.yaml", "model: {}\n")
    with pytest.raises(ModelNotFoundError):
        resolve_segmenter(str(config))


def test_segmenter_found_in_hf_cache(hf_cache: Path) -> None:
    snapshot = make_hf_cache_entry(hf_cache, "facebook/sam2.1-hiera-tiny", ["sam2.1_hiera_tiny.pt"])
    found = resolve_segmenter("sam2.1-hiera-tiny")
    assert found.source == "hf-cache"
    assert found.checkpoint.resolve() == (snapshot / "sam2.1_hiera_tiny.pt").resolve()
    assert found.config.is_file()
    assert found.config.parts[-3:] == ("configs", "sam2.1", "sam2.1_hiera_t.yaml")


def test_segmenter_models_dir_beats_hf_cache(models_dir: Path, hf_cache: Path) -> None:
    checkpoint = make_file(models_dir / "sam2" / "sam2.1_hiera_tiny.pt")
    make_hf_cache_entry(hf_cache, "facebook/sam2.1-hiera-tiny", ["sam2.1_hiera_tiny.pt"])
    found = resolve_segmenter("sam2.1-hiera-tiny")
    assert (found.checkpoint, found.source) == (checkpoint, "models-dir")


def test_segmenter_offline_nothing_found_message(models_dir: Path, hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_segmenter("sam2.1-hiera-base-plus")
    message = str(info.value)
    assert str(models_dir / "sam2" / "sam2.1_hiera_base_plus.pt") in message
    assert str(models_dir / "sam2.1_hiera_base_plus.pt") in message
    assert str(hf_cache) in message
    assert "skipped because HF_HUB_OFFLINE is set" in message
    assert f"{DOWNLOAD_HINT} sam2.1-hiera-base-plus" in message


@pytest.mark.usefixtures("online")
def test_segmenter_download_when_nothing_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fetched = make_file(tmp_path / "dl" / "sam2.1_hiera_base_plus.pt")
    monkeypatch.setattr(weights, "fetch_to_cache", lambda spec: fetched)
    found = resolve_segmenter("sam2.1-hiera-base-plus")
    assert (found.checkpoint, found.source) == (fetched, "download")
    assert_base_plus_package_config(found.config)


@pytest.mark.usefixtures("online")
def test_segmenter_download_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fetch(spec: DetectorSpec | SegmenterSpec) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(weights, "fetch_to_cache", failing_fetch)
    with pytest.raises(ModelNotFoundError, match=r"failed \(OSError: disk full\)"):
        resolve_segmenter("sam2.1-hiera-base-plus")


def test_sam2_package_config_unknown_name() -> None:
    with pytest.raises(ModelNotFoundError, match="no model config"):
        weights.sam2_package_config("configs/sam2.1/does_not_exist.yaml")


# --------------------------------------------------------------------------- names vs paths


@pytest.mark.parametrize(
    ("resolve", "name", "kind"),
    [(resolve_detector, "florence-3", "detector"), (resolve_segmenter, "sam3-huge", "segmenter")],
)
def test_unknown_name_lists_valid_names(resolve, name: str, kind: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve(name)
    message = str(info.value)
    assert repr(name) in message
    for valid in list_models(kind):
        assert valid in message
    assert not message.startswith(("'", '"'))  # __str__ shows the message, not KeyError's quoting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("florence-2-base", False),
        ("sam2.1-hiera-base-plus", False),
        ("florence-3", False),
        ("./x", True),
        ("a/b", True),
        ("x.pt", True),
        ("x.pth", True),
        ("x.yaml", True),
        ("~/m", True),
        (".", True),
    ],
)
def test_looks_like_path(text: str, expected: bool) -> None:
    assert looks_like_path(text) is expected


def test_looks_like_path_pathlike_and_existing(tmp_path: Path) -> None:
    assert looks_like_path(Path("florence-2-base")) is True
    (tmp_path / "sam2.1-hiera-tiny").mkdir()  # cwd is tmp_path: an existing entry counts as a path
    assert looks_like_path("sam2.1-hiera-tiny") is True


# --------------------------------------------------------------------------- download command


def test_download_to_models_dir_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download when offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_call)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_call)
    for name in ("florence-2-base", "sam2.1-hiera-tiny"):
        with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
            download_to_models_dir(name)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []

    def snapshot_download(*args: object, **kwargs: object) -> str:
        calls.append(("snapshot_download", args, kwargs))
        return str(kwargs.get("local_dir"))

    def hf_hub_download(repo_id: str, filename: str, **kwargs: object) -> str:
        calls.append(("hf_hub_download", (repo_id, filename), kwargs))
        return str(Path(str(kwargs["local_dir"])) / filename)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


@pytest.mark.usefixtures("online")
def test_download_detector_targets_models_name(fake_hub: list, models_dir: Path) -> None:
    target = download_to_models_dir("florence-2-large")
    assert target == models_dir / "florence-2-large"
    [(func, args, kwargs)] = fake_hub
    assert func == "snapshot_download"
    assert args == ("florence-community/Florence-2-large",)
    assert Path(kwargs["local_dir"]) == models_dir / "florence-2-large"


@pytest.mark.usefixtures("online")
def test_download_segmenter_targets_models_sam2(fake_hub: list, models_dir: Path) -> None:
    target = download_to_models_dir("sam2.1-hiera-base-plus")
    assert target == models_dir / "sam2" / "sam2.1_hiera_base_plus.pt"
    [(func, args, kwargs)] = fake_hub
    assert func == "hf_hub_download"
    assert args == ("facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt")
    assert Path(kwargs["local_dir"]) == models_dir / "sam2"


@pytest.mark.usefixtures("online")
def test_download_then_resolve_finds_models_dir(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    """What the download command writes is what the resolver finds first."""

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        return str(make_detector_dir(Path(str(kwargs["local_dir"]))))

    def hf_hub_download(repo_id: str, filename: str, **kwargs: object) -> str:
        return str(make_file(Path(str(kwargs["local_dir"])) / filename))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    download_to_models_dir("florence-2-base")
    download_to_models_dir("sam2.1-hiera-tiny")
    assert resolve_detector("florence-2-base").source == "models-dir"
    assert resolve_segmenter("sam2.1-hiera-tiny").source == "models-dir"


@pytest.mark.usefixtures("fake_hub")
def test_download_unknown_name_raises_unknown_model() -> None:
    with pytest.raises(UnknownModelError):
        download_to_models_dir("florence-3")


@pytest.mark.usefixtures("fake_hub")
def test_download_unknown_name_lists_every_valid_name() -> None:
    with pytest.raises(UnknownModelError) as info:
        download_to_models_dir("florence-3")
    message = str(info.value)
    for valid in list_models("detector") + list_models("segmenter"):
        assert valid in message


# ------------------------------------------------------------------------------------ families and gating


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ('{"model_type": "florence2"}', "florence2"),
        ('{"model_type": "grounding-dino"}', "grounding-dino"),
        ('{"model_type": "owlv2"}', "owlv2"),
        ('{"model_type": "bert"}', UnknownModelError("holds a 'bert' model, but a detector must be one of")),
        ("{}", UnknownModelError("holds a None model")),
        ("not json", weights.ModelLoadError("Could not read")),
    ],
)
def test_a_local_folder_family_comes_from_its_config(tmp_path: Path, config: str, expected) -> None:
    folder = make_detector_dir(tmp_path / "local")
    (folder / "config.json").write_text(config)
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=str(expected)):
            weights.detector_family_of(folder)
    else:
        assert weights.detector_family_of(folder) == expected


@pytest.mark.parametrize(("name", "family"), [("florence-2-base", "florence2"), ("grounding-dino-tiny", "grounding-dino"),
                                              ("grounding-dino-base", "grounding-dino"), ("owlv2-base", "owlv2")])
def test_registry_names_carry_their_family(models_dir: Path, name: str, family: str) -> None:
    make_detector_dir(models_dir / name)
    assert resolve_detector(name).family == family


GATED = DetectorSpec("gated-detector", "example-org/gated-detector", "a gated test entry", family="owlv2",
                     license="Example License", gated=True)


@pytest.mark.usefixtures("online")
def test_a_gated_model_refused_by_the_hub_says_how_to_accept_and_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import GatedRepoError

    def refused(spec: DetectorSpec | SegmenterSpec) -> Path:
        raise GatedRepoError("403 Client Error: access to model example-org/gated-detector is restricted")

    monkeypatch.setitem(weights.DETECTORS, GATED.name, GATED)
    monkeypatch.setattr(weights, "fetch_to_cache", refused)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_detector(GATED.name)
    message = str(info.value)
    assert "gated-detector (example-org/gated-detector, Example License) is a gated model" in message
    assert "https://huggingface.co/example-org/gated-detector" in message and "accept the licence" in message
    assert "huggingface-cli login" in message and "HF_TOKEN" in message


def test_a_gated_model_missing_offline_says_so_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(weights.DETECTORS, GATED.name, GATED)
    with pytest.raises(ModelNotFoundError, match="is a gated model.*huggingface-cli login"):
        resolve_detector(GATED.name)


def test_sam3_is_registered_as_gated_and_its_missing_weights_say_how_to_get_them() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_detector("sam3")
    message = str(info.value)
    assert "sam3 (facebook/sam3, SAM License) is a gated model" in message
    assert "https://huggingface.co/facebook/sam3" in message and "huggingface-cli login" in message


def test_detector_family_of_a_name_or_folder_reads_no_weights(tiny_models, tmp_path) -> None:
    from grounded_sam.errors import ModelLoadError, UnknownModelError
    from grounded_sam.models.weights import detector_family

    assert detector_family("sam3") == "sam3" and detector_family("owlv2-base") == "owlv2"
    assert detector_family(tiny_models["sam3_scripted"]) == "sam3"  # a sam3_video checkpoint, as facebook/sam3
    assert detector_family(str(tiny_models["grounding_dino"])) == "grounding-dino"
    with pytest.raises(UnknownModelError, match="florence-3"):
        detector_family("florence-3")
    with pytest.raises(ModelLoadError, match="config.json"):
        detector_family(tmp_path / "empty-folder")
