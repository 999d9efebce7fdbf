"""The code blocks of README.md, for the tests that run them. A block may be named by an HTML
comment on the line before its fence, e.g. <!-- example: consumer/main.cpp -->."""
import os
import pathlib
import re

README = pathlib.Path(os.environ.get("SMOE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2])) / "README.md"
_BLOCK = re.compile(r"(?:<!-- example: (?P<name>\S+) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)\n```", re.S)


def blocks(language):
    """[(name or None, code)] of the README's blocks in `language`, in order."""
    text = README.read_text()
    return [(m["name"], m["code"] + "\n") for m in _BLOCK.finditer(text) if m["language"] == language]


def named_block(name):
    text = README.read_text()
    found = [m["code"] + "\n" for m in _BLOCK.finditer(text) if m["name"] == name]
    if len(found) != 1:
        raise LookupError(f"README.md should have one block named {name}, has {len(found)}")
    return found[0]
