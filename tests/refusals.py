"""A command-line refusal as the project wants it: one sentence, exit 2, nothing written or changed."""

from pathlib import Path


def contents(root: Path) -> dict:
    """Every file under ``root`` and its bytes, to show that a refused command changed nothing."""
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def refusal(main, capsys, root: Path, *args) -> str:
    """The stderr of ``main`` refusing ``args``: one sentence, exit 2, nothing under ``root`` changed."""
    before = contents(root)
    assert main([str(arg) for arg in args]) == 2
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert message.startswith("error: ") and message.endswith(".") and "\n" not in message
    assert captured.out == "" and contents(root) == before
    return message
