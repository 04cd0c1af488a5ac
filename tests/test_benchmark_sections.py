"""benchmarks/sections.py: a benchmark rewriting docs/performance.md keeps the sections other benchmarks wrote."""

from benchmarks.sections import all_sections, replace_section, section


def test_a_section_is_appended_then_replaced_in_place_and_survives_a_rewrite():
    text = replace_section("# Performance\n\nbody\n", "imagenet", "first table")
    assert text.startswith("# Performance\n\nbody\n\n") and "first table" in section(text, "imagenet")
    again = replace_section(text + "\nlater text\n", "imagenet", "second table")
    assert "first table" not in again and "second table" in again and again.endswith("later text\n")
    assert section("# Performance rewritten\n", "imagenet") == ""


def test_every_section_is_found_in_order():
    text = replace_section(replace_section("# Performance\n", "imagenet", "networks"), "sweep", "workers")
    assert all_sections(text + "\ntrailing\n") == [section(text, "imagenet"), section(text, "sweep")]
