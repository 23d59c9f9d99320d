"""Numbers in the project's prose come from code: every generated block of docs/*.md and results/*/README.md is
what `python -m analysis.readme` writes from the committed sweeps, and no score-like number (0.123) stands in
their prose outside such a block."""

from pathlib import Path

import pytest

from analysis import readme

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("results/*/README.md")])


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_generated_blocks_are_current_and_prose_quotes_no_score(path):
    text = path.read_text()
    assert readme.stray_scores(text) == [], f"{path}: scores outside a generated block"
    if readme.BLOCK.search(text):
        assert readme.regenerate(path) == text, f"{path}: run python -m analysis.readme {path}"


def test_a_stale_block_is_found_and_rewritten(tmp_path):
    fixtures = ROOT / "tests" / "fixtures"
    doc = tmp_path / "README.md"
    doc.write_text(f"Intro.\n\n<!-- generated: baselines from {fixtures / 'ablation'} -->\nold\n"
                   "<!-- end generated -->\nOutro.\n")
    assert readme.main(["--check", str(doc)]) == 1 and "old" in doc.read_text()
    assert readme.main([str(doc)]) == 0
    text = doc.read_text()
    assert "K-means on raw pixels" in text and text.startswith("Intro.") and text.endswith("Outro.\n")
    assert readme.main(["--check", str(doc)]) == 0
    assert readme.stray_scores("ACC 0.812 in prose, +0.031 too; weights 0.1 and 2.0, `0.005` in code and $0.023 "
                               "are fine") == ["0.812", "+0.031"]


def test_a_bad_block_spec_is_one_sentence(tmp_path, capsys):
    doc = tmp_path / "README.md"
    doc.write_text("<!-- generated: nonsense from here -->\n<!-- end generated -->\n")
    assert readme.main([str(doc)]) == 2
    assert "is not a kind of report section" in capsys.readouterr().err


def test_a_file_that_is_not_utf8_is_one_sentence(tmp_path, capsys):
    doc = tmp_path / "README.md"
    doc.write_bytes(b"\xff\xfe not text")
    assert readme.main([str(doc)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {doc} cannot be read as UTF-8 text (")
    assert doc.read_bytes() == b"\xff\xfe not text"
