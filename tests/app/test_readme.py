"""Every Python code block of README.md runs as written, and shows the values it computes.

Each ```python block runs in a fresh interpreter, in an empty temporary
directory (so the installed pyce is imported and files the block writes go
there). A line whose comment is a value, such as

    loss = pyce.cross_entropy(logits, target)                   # np.float32(2.120211)

is checked: the value of `loss` (or of the expression, for a bare
expression) must have the type shown and agree to the digits shown.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

# A comment that is a value: np.float32(2.1), 2.1, -3e-05, True, (1, 2), [1, 2].
VALUE = re.compile(r"^(np\.\w+\([^()]*\)|[-+]?\d[\d_]*(\.\d*)?([eE][-+]?\d+)?|True|False|None"
                   r"|\([^()]*\)|\[[^\[\]]*\])$")
ASSIGN = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<expr>.+?)\s+#\s*(?P<value>.+?)\s*$")
BARE = re.compile(r"^(?P<expr>[^=#]+?)\s+#\s*(?P<value>.+?)\s*$")

CHECKER = '''
import numpy as _np
def _readme_check(actual, shown, line):
    expected = eval(shown, {"np": _np})
    assert type(actual) is type(expected), (
        f"README line {line}: shows {shown}, the code gives {actual!r}")
    if isinstance(expected, (tuple, list, bool, type(None))):
        assert actual == expected, f"README line {line}: shows {shown}, the code gives {actual!r}"
        print(f"checked README line {line}: {shown}")
        return
    digits = shown.split("(")[-1].rstrip(")")
    decimals = len(digits.split(".")[1].split("e")[0]) if "." in digits else 0
    assert abs(float(actual) - float(expected)) <= 0.5 * 10.0 ** -decimals * 1.000001, (
        f"README line {line}: shows {shown}, the code gives {actual!r}")
    print(f"checked README line {line}: {shown}")
'''


def python_blocks(text):
    """[(first line number, code)] of every ```python block of `text`."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            blocks.append((start + 1, "\n".join(lines[start:end])))
            i = end
        i += 1
    return blocks


def instrument(code, first_line):
    """`code` with a _readme_check after every top-level line whose comment is a value;
    returns (code, number of checks)."""
    out, checks = [CHECKER], 0
    for k, line in enumerate(code.splitlines()):
        number = first_line + k
        m = ASSIGN.match(line) or BARE.match(line)
        if m is None or line[:1].isspace() or not VALUE.match(m["value"]):
            out.append(line)
            continue
        checks += 1
        if "name" in m.groupdict() and m["name"]:
            out += [line, f"_readme_check({m['name']}, {m['value']!r}, {number})"]
        else:
            out.append(f"_readme_check(({m['expr']}), {m['value']!r}, {number})")
    return "\n".join(out) + "\n", checks


BLOCKS = python_blocks(README.read_text()) if README.is_file() else []


def test_the_readme_has_python_blocks():
    if not README.is_file():
        pytest.skip("README.md is not next to the tests (tests run from an sdist?)")
    assert len(BLOCKS) >= 3


def test_instrument_checks_values_and_only_values():
    code, checks = instrument("x = f(1)  # np.float32(2.5)\ny = g()  # a remark\n"
                              "h(2)  # 3\nz = 1  # He init, float32\na, b  # (1, True)\n", 10)
    assert checks == 3 and "_readme_check(a, b, '(1, True)', 14)" not in code
    assert "_readme_check((a, b), '(1, True)', 14)" in code
    assert "_readme_check(x, 'np.float32(2.5)', 10)" in code
    assert "_readme_check((h(2)), '3', 12)" in code
    assert "_readme_check(y" not in code and "_readme_check(z" not in code


@pytest.mark.parametrize("first_line, code", BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_block_runs_as_written(tmp_path, first_line, code):
    script, checks = instrument(code, first_line)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"the README block at line {first_line} failed:\n"
                                  f"{done.stderr[-3000:]}")
    assert done.stdout.count("checked README line") == checks
