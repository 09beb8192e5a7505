"""Every Python code block of README.md runs, so the README cannot drift from the code.

Blocks run in order in one namespace per README (later blocks may use names defined by
earlier ones), each in a fresh temporary working directory so that files they write (PNG
figures) do not land in the checkout. A block fenced as ``text`` is not Python (signatures,
shell output, cluster set-ups that need a scheduler) and is not run.
"""

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((line, match.group(1)))
    return blocks


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 5


def test_readme_opens_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("```bash")
    commands = lines[start + 1 : lines.index("```", start + 1)]
    assert commands == [
        "bash install.sh && python3 examples/demo.py",
        "bash install.sh && python3 -m pytest -q",
    ]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m pytest -q" in ci


@pytest.mark.slow
def test_every_python_block_runs(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for line, code in python_blocks():
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:  # name the block, keep the original traceback
            raise AssertionError(f"README.md code block at line {line} failed: {exc!r}") from exc
    assert os.getcwd() == str(tmp_path)
