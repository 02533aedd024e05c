"""Tests for grounded_sam.categories: splitting, cleaning, merging, prompt->class mapping, errors, to_spec."""

from __future__ import annotations

import pytest

from grounded_sam.categories import Categories, Prompt, parse_categories
from grounded_sam.errors import CategoryError, GroundedSamError


def as_pairs(categories: Categories) -> list[tuple[str, str]]:
    """Each prompt as (prompt text, class name): one readable value to compare against."""
    return [(p.text, categories.class_names[p.class_id]) for p in categories.prompts]


@pytest.mark.parametrize(
    ("given", "class_names", "pairs"),
    [
        pytest.param(
            "person, helmet, forklift",
            ("person", "helmet", "forklift"),
            [("person", "person"), ("helmet", "helmet"), ("forklift", "forklift")],
            id="three-in-order",
        ),
        pytest.param("  yellow   hard\that ,\tperson  ", ("yellow hard hat", "person"),
                     [("yellow hard hat", "yellow hard hat"), ("person", "person")], id="whitespace-collapsed"),
        pytest.param("person, person, helmet", ("person", "helmet"), [("person", "person"), ("helmet", "helmet")],
                     id="duplicate-prompt-merged"),
        pytest.param("Person, person, PERSON", ("Person",), [("Person", "Person")], id="case-duplicates-first-spelling-wins"),
        pytest.param("person,  person ,person", ("person",), [("person", "person")], id="duplicate-after-cleaning"),
        pytest.param(
            "yellow hard hat: helmet, person",
            ("helmet", "person"),
            [("yellow hard hat", "helmet"), ("person", "person")],
            id="prompt-colon-class",
        ),
        pytest.param(
            "yellow hard hat: helmet, person, hard hat: helmet",
            ("helmet", "person"),
            [("yellow hard hat", "helmet"), ("person", "person"), ("hard hat", "helmet")],
            id="two-prompts-one-class",
        ),
        pytest.param(
            "hard hat: Helmet, person, helmet",
            ("Helmet", "person"),
            [("hard hat", "Helmet"), ("person", "person"), ("helmet", "Helmet")],
            id="class-order-first-appearance-and-case-merge",
        ),
        pytest.param("hard hat :  helmet", ("helmet",), [("hard hat", "helmet")], id="spaces-around-colon"),
        pytest.param("person\nhelmet\n\nforklift", ("person", "helmet", "forklift"), None, id="newline-separated"),
        pytest.param("person; helmet;forklift", ("person", "helmet", "forklift"), None, id="semicolon-separated"),
        pytest.param("person,\nhelmet;; forklift,", ("person", "helmet", "forklift"), None, id="mixed-separators"),
        pytest.param(",, person ,,", ("person",), [("person", "person")], id="empty-items-skipped"),
        pytest.param(
            ["red, white car", "person"],
            ("red, white car", "person"),
            [("red, white car", "red, white car"), ("person", "person")],
            id="list-not-split-on-commas",
        ),
        pytest.param(["  big   truck ", "", "  "], ("big truck",), [("big truck", "big truck")], id="list-cleaned"),
        pytest.param(["hard hat: helmet", "person"], ("helmet", "person"),
                     [("hard hat", "helmet"), ("person", "person")], id="list-item-with-colon"),
        pytest.param(("person", "helmet"), ("person", "helmet"), None, id="tuple"),
        pytest.param((s for s in ["person", "helmet"]), ("person", "helmet"), None, id="generator"),
        pytest.param(
            {"yellow hard hat": "helmet", "person": "person", "hard hat": "Helmet"},
            ("helmet", "person"),
            [("yellow hard hat", "helmet"), ("person", "person"), ("hard hat", "helmet")],
            id="mapping",
        ),
        pytest.param({"  red  car ": " car "}, ("car",), [("red car", "car")], id="mapping-cleaned"),
    ],
)
def test_parse_categories(given, class_names: tuple[str, ...], pairs: list[tuple[str, str]] | None) -> None:
    parsed = parse_categories(given)
    assert parsed.class_names == class_names
    assert len(parsed) == len(class_names)
    if pairs is None:  # every prompt is its own class
        pairs = [(name, name) for name in class_names]
    assert as_pairs(parsed) == pairs
    assert all(isinstance(p, Prompt) and 0 <= p.class_id < len(class_names) for p in parsed.prompts)


def test_class_ids_follow_first_appearance() -> None:
    parsed = parse_categories("hat: helmet, person, helmet, cap: helmet, forklift")
    assert parsed.class_names == ("helmet", "person", "forklift")
    assert [(p.text, p.class_id) for p in parsed.prompts] == [
        ("hat", 0), ("person", 1), ("helmet", 0), ("cap", 0), ("forklift", 2)
    ]


@pytest.mark.parametrize(
    ("given", "error", "match"),
    [
        pytest.param("", CategoryError, "at least one category", id="empty-string"),
        pytest.param("   \n\t ", CategoryError, "at least one category", id="only-whitespace"),
        pytest.param(", ,,", CategoryError, "at least one category", id="only-commas"),
        pytest.param(" ;\n; ", CategoryError, "at least one category", id="only-separators"),
        pytest.param([], CategoryError, "at least one category", id="empty-list"),
        pytest.param(["", "  "], CategoryError, "at least one category", id="list-of-blanks"),
        pytest.param({}, CategoryError, "at least one category", id="empty-mapping"),
        pytest.param(": helmet", CategoryError, "text on both sides", id="no-prompt-before-colon"),
        pytest.param("hat:", CategoryError, "text on both sides", id="no-class-after-colon"),
        pytest.param("person, hat:  , helmet", CategoryError, "text on both sides", id="blank-class-mid-list"),
        pytest.param(" : ", CategoryError, "text on both sides", id="lone-colon"),
        pytest.param(["person", 3], CategoryError, "int", id="non-string-list-item"),
        pytest.param(["person", None], CategoryError, "NoneType", id="none-list-item"),
        pytest.param([b"person"], CategoryError, "bytes", id="bytes-list-item"),
        pytest.param(42, CategoryError, "int", id="not-iterable"),
        pytest.param({"hat": "  "}, CategoryError, "non-empty", id="mapping-blank-class"),
        pytest.param({" ": "helmet"}, CategoryError, "non-empty", id="mapping-blank-prompt"),
    ],
)
def test_parse_categories_errors(given, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_categories(given)


def test_category_error_is_catchable_as_package_and_value_error() -> None:
    with pytest.raises(GroundedSamError):
        parse_categories("")
    with pytest.raises(ValueError):
        parse_categories("")


def test_categories_pass_through_unchanged() -> None:
    parsed = parse_categories("hat: helmet, person")
    assert parse_categories(parsed) is parsed


@pytest.mark.parametrize(
    ("given", "spec"),
    [
        pytest.param("person, helmet, forklift", "person, helmet, forklift", id="plain"),
        pytest.param("  yellow  hard hat :helmet;person\n", "yellow hard hat: helmet, person", id="mapping-and-cleaning"),
        pytest.param("hat: Helmet, person, helmet", "hat: Helmet, person, helmet: Helmet", id="case-merged-class"),
        pytest.param("person, person: human", "person, person: human", id="same-prompt-two-classes"),
        pytest.param(["big truck", "cap: hat"], "big truck, cap: hat", id="list"),
        pytest.param({"red car": "car", "car": "car"}, "red car: car, car", id="mapping"),
    ],
)
def test_to_spec_round_trips(given, spec: str) -> None:
    parsed = parse_categories(given)
    assert parsed.to_spec() == spec
    assert parse_categories(spec) == parsed
    assert parse_categories(parsed.to_spec()).to_spec() == spec


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(["red, white car"], id="comma-in-list-item"),
        pytest.param(["salt; pepper"], id="semicolon-in-list-item"),
        pytest.param({"ratio 1:2": "ratio 1:2"}, id="colon-in-mapping-prompt"),
        pytest.param({"hat": "a:b"}, id="colon-in-mapping-class"),
        pytest.param([("hat", "helmet"), ("hat", "cap")], id="one-prompt-two-classes"),
    ],
)
def test_as_pairs_round_trips_separators_inside_names(given) -> None:
    parsed = parse_categories(given)
    assert parse_categories(parsed.as_pairs()) == parsed


def test_huge_inputs_are_refused_at_once_with_a_short_message() -> None:
    from grounded_sam.categories import MAX_PROMPT_CHARS, MAX_PROMPTS

    with pytest.raises(CategoryError, match=f"at most {MAX_PROMPTS} categories, but got 10_000") as many:
        parse_categories(", ".join(f"thing {i}" for i in range(10_000)))
    with pytest.raises(CategoryError, match=f"at most {MAX_PROMPT_CHARS} characters, but one has 1_048_576") as long:
        parse_categories("x" * 1_048_576)
    with pytest.raises(CategoryError, match="at least one category") as empty:
        parse_categories(" ,\n" * 300_000)
    for error in (many, long, empty):
        assert len(str(error.value)) < 400  # the message never repeats the input
    assert len(parse_categories(", ".join(f"thing {i}" for i in range(MAX_PROMPTS))).prompts) == MAX_PROMPTS
    # Repeats are merged before counting.
    assert parse_categories(", ".join(["cat"] * 10_000)).class_names == ("cat",)


def test_control_characters_are_dropped_and_other_scripts_kept() -> None:
    parsed = parse_categories("per\x00son, \u05d0\u05d3\u05dd, \U0001f9d1\u200d\U0001f692, \u200fright-to-left\x1b[0m")
    assert parsed.class_names == ("per son", "\u05d0\u05d3\u05dd", "\U0001f9d1\u200d\U0001f692",
                                  "\u200fright-to-left [0m")
