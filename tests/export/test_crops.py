"""Per-object cut-outs: crop geometry, background, square resize, object selection and the writer."""

from __future__ import annotations

import json
from pathlib import Path, PurePath

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.errors import OptionError
from grounded_sam.export import JsonLabelWriter, LabeledImage
from grounded_sam.export.crops import (
    CropWriter,
    crop_region,
    make_crop,
    parse_background,
    select_objects,
)
from grounded_sam.naming import class_folder_names, sanitize_class_name
from tests.factories import make_detections

HEIGHT, WIDTH = 40, 60


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(7).integers(1, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _ring_mask() -> np.ndarray:
    """An object with a hole, inside the box (20, 10, 40, 30), so on and off pixels mix inside the box."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[10:30, 20:40] = True
    mask[15:25, 25:35] = False
    mask[10, 20] = False
    return mask


def _detections(boxes, masks, class_ids, names) -> sv.Detections:
    return make_detections(boxes, mask=masks, confidence=np.full(len(boxes), 0.9), class_id=class_ids, class_name=names)


def _box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


# --------------------------------------------------------------------------- make_crop


def test_transparent_crop_has_alpha_exactly_on_the_mask_and_keeps_colours(image):
    mask = _ring_mask()
    crop = make_crop(image, mask, (20, 10, 40, 30), margin=0.0)
    assert crop.shape == (20, 20, 4) and crop.dtype == np.uint8
    inside = mask[10:30, 20:40]
    np.testing.assert_array_equal(crop[..., 3], np.where(inside, 255, 0))
    np.testing.assert_array_equal(crop[..., :3][inside], image[10:30, 20:40][inside])
    # Hidden pixels carry no trace of the scene, for loaders that drop alpha.
    assert not crop[..., :3][~inside].any()


def test_margin_grows_the_box_by_a_fraction_of_its_size(image):
    mask = _ring_mask()
    crop = make_crop(image, mask, (20, 10, 40, 30), margin=0.25)  # 5 px each side
    assert crop.shape == (30, 30, 4)
    np.testing.assert_array_equal(crop[..., 3] > 0, mask[5:35, 15:45])
    np.testing.assert_array_equal(crop[5:25, 5:25, :3][mask[10:30, 20:40]], image[10:30, 20:40][mask[10:30, 20:40]])


def test_fractional_boxes_round_outwards():
    assert crop_region((20.5, 10.2, 39.5, 29.9), (WIDTH, HEIGHT), 0.0) == (20, 10, 40, 30)
    # 0.1 of a 19-pixel width is 1.9 px: the region still grows outwards to whole pixels.
    assert crop_region((20.5, 10.0, 39.5, 30.0), (WIDTH, HEIGHT), 0.1) == (18, 8, 42, 32)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 15, 15)),  # top-left corner: clipped at 0
        ((50, 30, 60, 40), (45, 25, 60, 40)),  # bottom-right corner: clipped at the size
        ((-5, -5, 70, 50), (0, 0, 60, 40)),  # box larger than the image
        ((60, 10, 60, 20), (59, 5, 60, 25)),  # zero width on the far edge: still one column
    ],
)
def test_margin_is_clipped_at_image_edges(image, box, expected):
    assert crop_region(box, (WIDTH, HEIGHT), 0.5) == expected
    left, top, right, bottom = expected
    crop = make_crop(image, None, box, margin=0.5)
    assert crop.shape == (bottom - top, right - left, 4)
    np.testing.assert_array_equal(crop[..., :3], image[top:bottom, left:right])
    assert (crop[..., 3] == 255).all()


def test_box_outside_the_image_is_an_error(image):
    with pytest.raises(OptionError, match="outside"):
        make_crop(image, None, (70, 0, 80, 10))


def test_fill_colour_replaces_the_background(image):
    mask = _ring_mask()
    crop = make_crop(image, mask, (20, 10, 40, 30), margin=0.0, background=(255, 0, 255))
    assert crop.shape == (20, 20, 3)
    inside = mask[10:30, 20:40]
    np.testing.assert_array_equal(crop[inside], image[10:30, 20:40][inside])
    assert (crop[~inside] == (255, 0, 255)).all()


@pytest.mark.parametrize(
    ("box", "size", "content_hw"),
    [
        ((10, 10, 50, 30), 100, (50, 100)),  # 40 x 20, wide, scaled up: content 100 x 50
        ((20, 0, 30, 40), 16, (16, 4)),  # 10 x 40, tall, scaled down: content 4 x 16
        ((5, 5, 35, 35), 64, (64, 64)),  # square: no padding
    ],
)
def test_square_resize_keeps_aspect_ratio_and_pads_transparent(image, box, size, content_hw):
    crop = make_crop(image, _box_mask(*box), box, margin=0.0, size=size)
    assert crop.shape == (size, size, 4)
    rows, cols = np.nonzero(crop[..., 3])
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == content_hw
    # Centred: the padding on either side differs by at most one pixel.
    assert abs(rows.min() - (size - 1 - rows.max())) <= 1 and abs(cols.min() - (size - 1 - cols.max())) <= 1
    # A fully opaque crop stays fully opaque where it lands: resizing keeps the content whole.
    assert (crop[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1, 3] == 255).all()


def test_square_resize_pads_with_the_fill_colour(image):
    box = (10, 10, 50, 30)
    crop = make_crop(image, _box_mask(*box), box, margin=0.0, background=(0, 255, 0), size=80)
    assert crop.shape == (80, 80, 3)
    assert (crop[:20] == (0, 255, 0)).all() and (crop[60:] == (0, 255, 0)).all()
    # The content (40 x 20 -> 80 x 40) is exactly the image region, resized the same way.
    region = np.asarray(Image.fromarray(image[10:30, 10:50]).resize((80, 40), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(crop[20:60], region)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": -0.1}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"margin": 11.0}, "margin"),
        ({"size": 0}, "size"),
        ({"size": 12.5}, "size"),
        ({"size": True}, "size"),
        ({"background": (256, 0, 0)}, "background"),
        ({"background": (1, 2)}, "background"),
    ],
)
def test_bad_crop_options_are_clear_errors(image, kwargs, message):
    with pytest.raises(OptionError, match=message):
        make_crop(image, None, (10, 10, 20, 20), **kwargs)


def test_mask_of_another_shape_is_an_error(image):
    with pytest.raises(OptionError, match=r"mask must have the image's shape \(40, 60\)"):
        make_crop(image, np.ones((10, 10), dtype=bool), (0, 0, 5, 5))


# --------------------------------------------------------------------------- parse_background


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("transparent", None),
        (" None ", None),
        ("white", (255, 255, 255)),
        ("Black", (0, 0, 0)),
        ("#FF8000", (255, 128, 0)),
        ("00ff7f", (0, 255, 127)),
        ("12, 34,56", (12, 34, 56)),
    ],
)
def test_parse_background(text, expected):
    assert parse_background(text) == expected


@pytest.mark.parametrize("text", ["blue-ish", "#12345", "1,2", "1,2,300", "-1,2,3", ""])
def test_parse_background_rejects_unknown_text(text):
    with pytest.raises(OptionError, match="transparent"):
        parse_background(text)


# --------------------------------------------------------------------------- select_objects


def _three_objects() -> sv.Detections:
    masks = [_box_mask(0, 0, 10, 10), _box_mask(20, 20, 40, 40), np.zeros((HEIGHT, WIDTH), dtype=bool)]
    return _detections([[0, 0, 10, 10], [20, 20, 40, 40], [40, 0, 60, 20]], masks, [0, 1, 1], ["a", "b", "b"])


def test_select_drops_empty_masks_and_keeps_order():
    kept = select_objects(_three_objects(), (WIDTH, HEIGHT))
    assert kept.data["source_index"].tolist() == [0, 1]
    assert kept.data["class_name"].tolist() == ["a", "b"]


def test_select_min_area_is_a_fraction_of_the_image_inclusive():
    area_small, area_big = 100, 400  # pixels, of a 2400-pixel image
    detections = _three_objects()
    def kept(fraction: float) -> list[int]:
        return select_objects(detections, (WIDTH, HEIGHT), min_area_fraction=fraction).data["source_index"].tolist()

    assert kept(area_small / 2400) == [0, 1]
    assert kept(0.05) == [1]
    assert kept(area_big / 2400) == [1]
    assert kept((area_big + 1) / 2400) == []


def test_select_largest_only_keeps_one_object_across_classes():
    kept = select_objects(_three_objects(), (WIDTH, HEIGHT), largest_only=True)
    assert kept.data["source_index"].tolist() == [1]
    assert kept.mask.shape == (1, HEIGHT, WIDTH)


def test_select_largest_only_breaks_ties_by_order_and_uses_boxes_without_masks():
    detections = _detections([[0, 0, 10, 10], [20, 20, 30, 30], [30, 0, 60, 5]], None, [0, 0, 1], ["a", "a", "b"])
    assert select_objects(detections, (WIDTH, HEIGHT), largest_only=True).data["source_index"].tolist() == [2]
    tied = _detections([[0, 0, 10, 10], [20, 20, 30, 30]], None, [0, 0], ["a", "a"])
    assert select_objects(tied, (WIDTH, HEIGHT), largest_only=True).data["source_index"].tolist() == [0]


@pytest.mark.parametrize("fraction", [-0.01, 1.5])
def test_select_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(OptionError, match="between 0 and 1"):
        select_objects(_three_objects(), (WIDTH, HEIGHT), min_area_fraction=fraction)


# --------------------------------------------------------------------------- folders and the writer


@pytest.mark.parametrize(
    ("name", "folder"),
    [("../evil", "evil"), ("hard hat", "hard_hat"), ("a/b\\c", "a_b_c"), ("..", "unnamed"), ("Straße", "Straße")],
)
def test_sanitize_class_name(name, folder):
    assert sanitize_class_name(name) == folder


def test_class_folders_never_collide():
    assert class_folder_names(["hard hat", "hard_hat", "Truck", "truck", "../x"]) == [
        "hard_hat", "hard_hat-2", "Truck", "truck-2", "x",
    ]


def _item(image: np.ndarray, detections: sv.Detections, names: tuple[str, ...], stem: str = "img") -> LabeledImage:
    return LabeledImage(f"/in/{stem}.jpg", stem, image, detections, names)


def test_writer_names_crops_by_class_and_detection_index(image, tmp_path):
    detections = _three_objects()
    writer = CropWriter(tmp_path, margin=0.0)
    paths = writer.write(_item(image, detections, ("a", "b")))
    assert paths == [tmp_path / "crops" / "a" / "img_0.png", tmp_path / "crops" / "b" / "img_1.png"]
    assert all(p.is_file() for p in paths) and writer.finalize() == []
    with Image.open(paths[1]) as png:
        assert png.mode == "RGBA" and png.size == (20, 20)
        np.testing.assert_array_equal(np.asarray(png)[..., :3], image[20:40, 20:40])
    # No temporary files left beside them.
    assert sorted(p.name for p in (tmp_path / "crops").rglob("*") if p.is_file()) == ["img_0.png", "img_1.png"]


def test_writer_filters_fills_and_resizes(image, tmp_path):
    writer = CropWriter(tmp_path, margin=0.0, background="white", size=32, largest_only=True)
    [path] = writer.write(_item(image, _three_objects(), ("a", "b")))
    assert path == tmp_path / "crops" / "b" / "img_1.png"
    with Image.open(path) as png:
        assert png.mode == "RGB" and png.size == (32, 32)
    assert writer.settings() == {
        "margin": 0.0, "background": [255, 255, 255], "size": 32, "largest_only": True, "min_area": 0.0,
    }
    assert CropWriter(tmp_path, min_area=0.5).write(_item(image, _three_objects(), ("a", "b"))) == []


def test_relabeling_an_image_replaces_its_earlier_crops_only(image, tmp_path):
    CropWriter(tmp_path).write(_item(image, _three_objects(), ("a", "b")))
    other_image = CropWriter(tmp_path).write(_item(image, _three_objects(), ("a", "b"), stem="img_1"))
    assert [p.name for p in other_image] == ["img_1_0.png", "img_1_1.png"]  # never confused with img's crop 1

    rerun = CropWriter(tmp_path, largest_only=True)
    assert rerun.write(_item(image, _three_objects(), ("a", "b"))) == [tmp_path / "crops" / "b" / "img_1.png"]
    remaining = sorted(p.relative_to(tmp_path / "crops").as_posix() for p in (tmp_path / "crops").rglob("*.png"))
    assert remaining == ["a/img_1_0.png", "b/img_1.png", "b/img_1_1.png"]
    # An image with no objects left loses its earlier crops too.
    assert rerun.write(_item(image, _three_objects()[np.array([], dtype=int)], ("a", "b"), stem="img_1")) == []
    assert sorted(p.name for p in (tmp_path / "crops").rglob("*.png")) == ["img_1.png"]


def test_writer_keeps_hostile_class_names_inside_its_folder(image, tmp_path):
    detections = _detections([[0, 0, 10, 10], [20, 20, 40, 40]], [_box_mask(0, 0, 10, 10), _box_mask(20, 20, 40, 40)],
                             [0, 7], ["../evil", "/etc/passwd"])
    out = tmp_path / "out"
    paths = CropWriter(out).write(_item(image, detections, ("../evil",), stem="x"))
    crops = (out / "crops").resolve()
    assert [p.relative_to(out).as_posix() for p in paths] == ["crops/evil/x_0.png", "crops/etc_passwd/x_1.png"]
    assert all(crops in p.resolve().parents for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": -1}, "margin"),
        ({"size": -5}, "size"),
        ({"min_area": 2}, "between 0 and 1"),
        ({"background": "plaid"}, "plaid"),
    ],
)
def test_writer_validates_options(tmp_path, kwargs, message):
    with pytest.raises(OptionError, match=message):
        CropWriter(tmp_path, **kwargs)


def test_writer_through_the_pipeline_writes_rgba_cutouts_matching_the_masks(scripted_pipe, photos, tmp_path):
    from grounded_sam.runs.batch import InputImage, label_images

    pipe = scripted_pipe
    results: list[sv.Detections] = []

    def recording_pipe(rgb: np.ndarray, categories) -> sv.Detections:
        results.append(pipe(rgb, categories))
        return results[-1]

    truck = photos / "truck.jpg"
    summary = label_images(
        recording_pipe, [InputImage(truck, PurePath(truck.name))], "truck, tire",
        [JsonLabelWriter(tmp_path), CropWriter(tmp_path, margin=0.1)],
    )
    [outcome], [detections] = summary.outcomes, results
    assert outcome.ok, outcome.error
    height, width = detections.mask.shape[1:]
    record = json.loads((tmp_path / "labels" / "truck.json").read_text())
    # Every crop is among the image's outputs, which the run's manifest records.
    crop_paths = sorted(Path(p) for p in outcome.outputs if "/crops/" in Path(p).as_posix())
    assert len(detections) >= 1 and len(crop_paths) == len(detections) == len(record["detections"])
    for path in crop_paths:
        index = int(path.stem.rsplit("_", 1)[1])
        assert path.parent.name == record["detections"][index]["class_name"] == detections.data["class_name"][index]
        left, top, right, bottom = crop_region(detections.xyxy[index], (width, height), 0.1)
        mask = detections.mask[index, top:bottom, left:right]
        with Image.open(path) as png:
            assert png.mode == "RGBA"
            pixels = np.asarray(png)
        assert pixels.shape == (bottom - top, right - left, 4)
        np.testing.assert_array_equal(pixels[..., 3], np.where(mask, 255, 0))
