"""Tests for grounded_sam.models.florence.parsing: literal Florence-2 generations in, pixel boxes out.

The parser is also checked against transformers' own ``Florence2Processor.post_process_generation``
on the same strings, with the processor of a tiny random Florence-2 (no network).
"""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.models.florence.parsing import LOCATION_BINS, dequantize_bins, parse_grounding

GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"


def loc(*bins: int) -> str:
    return "".join(f"<loc_{b}>" for b in bins)


def generated(body: str, pads: int = 2) -> str:
    """What ``batch_decode(..., skip_special_tokens=False)`` gives: ``</s><s>`` before, ``</s>`` and padding after."""
    return f"</s><s>{body}</s>" + "<pad>" * pads


def pixels(bins: list[list[int]], image_size: tuple[int, int]) -> np.ndarray:
    """The centre of each bin in pixels: (bin + 0.5) * size / 1000."""
    width, height = image_size
    out = [[(x1 + 0.5) * width / 1000, (y1 + 0.5) * height / 1000, (x2 + 0.5) * width / 1000, (y2 + 0.5) * height / 1000]
           for x1, y1, x2, y2 in bins]
    return np.array(out, dtype=np.float64).reshape(-1, 4)


# (generated text, expected phrases, expected bins): shared by the parser tests and the transformers comparison.
CASES = [
    pytest.param(generated("truck" + loc(12, 40, 800, 910)), ["truck"], [[12, 40, 800, 910]], id="one-box"),
    pytest.param(
        generated("cars" + loc(10, 20, 300, 400) + loc(500, 20, 700, 400) + loc(0, 0, 999, 999)),
        ["cars"] * 3,
        [[10, 20, 300, 400], [500, 20, 700, 400], [0, 0, 999, 999]],
        id="many-boxes-one-phrase",
    ),
    pytest.param(
        generated("a yellow truck" + loc(12, 40, 800, 910) + "tire" + loc(100, 700, 250, 950) + loc(600, 700, 750, 950)
                  + "person" + loc(850, 300, 990, 980)),
        ["a yellow truck", "tire", "tire", "person"],
        [[12, 40, 800, 910], [100, 700, 250, 950], [600, 700, 750, 950], [850, 300, 990, 980]],
        id="several-phrases",
    ),
    pytest.param(
        generated("truck" + loc(12, 40, 800, 910, 5, 6) + "tire" + loc(1, 2, 3, 4, 5, 6, 7)),
        ["truck", "tire"],
        [[12, 40, 800, 910], [1, 2, 3, 4]],
        id="leftover-locs-ignored",
    ),
    pytest.param(generated("person" + loc(0, 0, 999, 999), pads=0), ["person"], [[0, 0, 999, 999]], id="no-padding"),
    pytest.param(generated("A green car parked in front of a yellow building."), [], [], id="no-boxes"),
    pytest.param(generated(""), [], [], id="empty-generation"),
    pytest.param(generated("truck" + loc(1, 2, 3)), [], [], id="too-few-locs"),
]

SIZES = [pytest.param((640, 480), id="640x480"), pytest.param((1280, 720), id="1280x720"),
         pytest.param((333, 777), id="333x777")]


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize(("text", "phrases", "bins"), CASES)
def test_parse_grounding(text: str, phrases: list[str], bins: list[list[int]], image_size: tuple[int, int]) -> None:
    got_phrases, boxes = parse_grounding(text, image_size)
    assert got_phrases == phrases
    assert boxes.dtype == np.float32
    assert boxes.shape == (len(phrases), 4)
    np.testing.assert_allclose(boxes, pixels(bins, image_size), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(
    ("text", "phrases", "bins"),
    [
        pytest.param(generated("truck" + loc(1, 2, 3, 4) + "  " + loc(5, 6, 7, 8)), ["truck", "truck"],
                     [[1, 2, 3, 4], [5, 6, 7, 8]], id="run-without-text-reuses-phrase"),
        pytest.param("<s>" + loc(1, 2, 3, 4) + "</s>", [""], [[1, 2, 3, 4]], id="run-before-any-phrase"),
        pytest.param(generated("<od>car" + loc(1, 2, 3, 4) + "</od>"), ["car"], [[1, 2, 3, 4]], id="task-tags-dropped"),
        pytest.param(generated("  big   dog " + loc(1, 2, 3, 4)), ["big   dog"], [[1, 2, 3, 4]], id="phrase-stripped"),
        pytest.param(generated("x" + loc(1500, 0, 999, 1000)), ["x"], [[999, 0, 999, 999]], id="bins-clipped"),
        pytest.param(generated("x" + loc(7, 8, 9, 10), pads=5) + "<pad>" * 3, ["x"], [[7, 8, 9, 10]], id="long-padding"),
    ],
)
def test_parse_grounding_edge_cases(text: str, phrases: list[str], bins: list[list[int]]) -> None:
    got_phrases, boxes = parse_grounding(text, (1000, 1000))
    assert got_phrases == phrases
    np.testing.assert_array_equal(boxes, pixels(bins, (1000, 1000)).astype(np.float32))


def test_parse_grounding_no_boxes_is_empty_float32() -> None:
    phrases, boxes = parse_grounding(generated("nothing here"), (640, 480))
    assert phrases == []
    assert boxes.shape == (0, 4)
    assert boxes.dtype == np.float32


def test_parse_grounding_exact_pixels() -> None:
    # Width 1000 and height 2000 make every bin centre exact: x = bin + 0.5, y = 2 * bin + 1.
    _, boxes = parse_grounding(generated("truck" + loc(12, 40, 800, 999)), (1000, 2000))
    np.testing.assert_array_equal(boxes, np.array([[12.5, 81.0, 800.5, 1999.0]], dtype=np.float32))


@pytest.mark.parametrize(
    ("bins", "image_size", "expected"),
    [
        pytest.param([[0, 0, 999, 999]], (1000, 1000), [[0.5, 0.5, 999.5, 999.5]], id="extremes"),
        pytest.param([[12, 40, 800, 910]], (2000, 500), [[25.0, 20.25, 1601.0, 455.25]], id="scaled"),
        pytest.param([[-5, -1, 1000, 5000]], (1000, 1000), [[0.5, 0.5, 999.5, 999.5]], id="clipped-to-0-999"),
        pytest.param([1, 2, 3, 4], (1000, 1000), [[1.5, 2.5, 3.5, 4.5]], id="flat-reshaped"),
        pytest.param(np.zeros((0, 4), dtype=np.int64), (640, 480), np.zeros((0, 4)), id="empty"),
    ],
)
def test_dequantize_bins(bins, image_size: tuple[int, int], expected) -> None:
    out = dequantize_bins(np.asarray(bins), image_size)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.float32).reshape(-1, 4))


def test_dequantize_bins_num_bins() -> None:
    out = dequantize_bins(np.array([[0, 1, 9, 20]]), (100, 10), num_bins=10)
    np.testing.assert_array_equal(out, np.array([[5.0, 1.5, 95.0, 9.5]], dtype=np.float32))


def test_location_bins() -> None:
    assert LOCATION_BINS == 1000


# --- agreement with transformers' Florence2Processor -------------------------------------------------------------


@pytest.fixture(scope="module")
def florence_folder(tmp_path_factory: pytest.TempPathFactory):
    from grounded_sam.models.testing import build_random_florence2

    return build_random_florence2(tmp_path_factory.mktemp("florence") / "flo")


@pytest.fixture(scope="module")
def florence_processor(florence_folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(florence_folder)


def test_location_tokens_are_in_the_tokenizer(florence_processor) -> None:
    tokenizer = florence_processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<loc_0>", "<loc_500>", "<loc_999>"])
    assert tokenizer.unk_token_id not in ids
    text = "truck" + loc(12, 40, 800, 910)
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(encoded, skip_special_tokens=False) == text


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize(("text", "phrases", "bins"), CASES)
def test_parse_grounding_matches_transformers(
    florence_processor, text: str, phrases: list[str], bins: list[list[int]], image_size: tuple[int, int]
) -> None:
    theirs = florence_processor.post_process_generation(text, task=GROUNDING, image_size=image_size)[GROUNDING]
    their_boxes = np.asarray(theirs["bboxes"], dtype=np.float64).reshape(-1, 4)
    our_phrases, our_boxes = parse_grounding(text, image_size)
    assert our_phrases == theirs["labels"] == phrases
    assert our_boxes.shape == their_boxes.shape
    # transformers truncates the same bin centres to int: ours are never below and less than a pixel above.
    diff = our_boxes.astype(np.float64) - their_boxes
    assert np.all(diff >= -1e-4)
    assert np.all(diff < 1.0)


def test_random_florence2_processor_post_processes_grounding(florence_folder) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(florence_folder)
    text = generated("truck" + loc(12, 40, 800, 910))
    out = processor.post_process_generation(text, task=GROUNDING, image_size=(1000, 1000))
    assert out[GROUNDING]["labels"] == ["truck"]
