"""Build the packaged English sentence corpus ``src/laimco/data/sentences.json``.

The sentences are prose taken from the CPython standard library that the running interpreter
ships (licence: PSF-2.0, the licence of CPython and of its documentation):

* the docstrings of every module, class and function in the standard library's ``.py`` files,
  read with :mod:`ast` (nothing is imported or executed); test packages and ``site-packages``
  are skipped;
* the Language Reference topics that the interpreter ships as ``pydoc_data/topics.py`` (the
  plain-text rendering of the Python documentation that ``help("if")`` shows).

Each docstring or topic is cut into paragraphs at blank lines; paragraphs that hold code,
literal blocks, tables or headings are dropped; the rest are joined into one line and cut into
sentences after ``.``, ``!`` or ``?`` followed by a capital letter (the periods of ``e.g.``,
``i.e.``, ``etc.``... are protected first). A sentence is kept when (see ``is_prose``):

* it has 8 to 40 words, starts with a capital letter and ends with a single period;
* every word is a plain English word (letters, inner apostrophes or hyphens), a number, or an
  upper-case acronym of at most 5 letters, optionally wrapped in parentheses and followed by
  ``,``, ``;`` or ``:``; so no code, markup, quotes, paths, URLs, CamelCase or snake_case;
* it contains none of the code-like words in ``CODE_WORDS`` (``self``, ``None``, ``str``...),
  none of the abbreviations in ``ABBREVIATIONS`` and none of the words in ``BANNED_WORDS``
  (copyright notices, to-do notes);
* it is ASCII (plus the typographic apostrophe used by the Python documentation).

Duplicates are removed by a key that ignores case, punctuation and spacing (first occurrence
kept, in sorted source order). For variety, the kept sentences are grouped by origin (the
top-level standard-library module, or the reference topic) and ``N_SENTENCES`` are chosen by
round robin over the groups: round r takes the r-th sentence of every group that still has
one, each group's sentences being ordered by the SHA-256 of their text, and the sentences of
one round being ordered the same way. There is no other randomness.

The exact output depends on the Python version whose standard library is read (docstrings
change between releases); the shipped file was built with the version recorded in its
``python_version`` field and is the reference. Re-running this script with that version
reproduces it byte for byte.

Usage::

    .venv/bin/python scripts/build_corpus.py            # writes src/laimco/data/sentences.json
    .venv/bin/python scripts/build_corpus.py --check    # exit 1 if the shipped file differs
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import re
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

N_SENTENCES = 960
MIN_WORDS = 8
MAX_WORDS = 40
MAX_ACRONYM_LETTERS = 5
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "laimco" / "data" / "sentences.json"
SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})
TOPICS_FILE = Path("pydoc_data") / "topics.py"

# Lower-case words that in docstrings almost always name code, not English.
CODE_WORDS = frozenset({
    "self", "cls", "args", "kwargs", "kwds", "argv", "str", "int", "bool", "dict", "tuple",
    "repr", "len", "func", "obj", "fd", "buf", "tb", "def", "lambda", "elif", "init", "stdin",
    "stdout", "stderr", "utf", "none", "true", "false",
})
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "cf.", "vs.", "viz.", "approx.", "resp.", "Mr.",
                 "Mrs.", "Dr.", "St.", "No.", "Ph.D.", "a.k.a.")
BANNED_WORDS = frozenset({"copyright", "licence", "license", "xxx", "todo", "fixme", "author"})
PROTECTED = "\x00"  # stands for a protected period while sentences are cut

WORD = r"(?:[A-Za-z]+(?:['’-][A-Za-z]+)*|\d+(?:\.\d+)?%?)"
TOKEN_RE = re.compile(rf"\(?{WORD}\)?[,;:]?")
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
RULE_LINE_RE = re.compile(r"^\s*([*=~^\-+#`'\"_|])\1{2,}\s*$")
ABBREVIATION_RE = re.compile(
    "(?<![A-Za-z])(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + ")"
)
BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|\(\w\))\s")


@dataclass(frozen=True)
class Sentence:
    text: str
    origin: str  # e.g. "json.decoder.JSONDecoder.decode" or "reference:if"

    @property
    def group(self) -> str:
        """The variety group: top-level module, or reference topic."""
        return self.origin if self.origin.startswith("reference:") else self.origin.split(".")[0]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[Path]:
    """Every standard-library .py file outside test packages, in sorted order."""
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_DIRS]
        for name in names:
            path = Path(folder) / name
            if (name.endswith(".py") and not name.startswith("test_")
                    and path.relative_to(root) != TOPICS_FILE):
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def docstrings(path: Path, root: Path) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of the module and each class and function in a file."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return
    module = module_name(path.relative_to(root))

    def visit(node: ast.AST, qualname: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield qualname, doc
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, f"{qualname}.{child.name}")

    yield from visit(tree, module)


def reference_topics(root: Path) -> list[tuple[str, str]]:
    """(topic, text) of the Language Reference topics in pydoc_data/topics.py, sorted."""
    tree = ast.parse((root / TOPICS_FILE).read_bytes())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "topics" for t in node.targets
        ):
            topics: dict[str, str] = ast.literal_eval(node.value)
            return sorted(topics.items())
    raise RuntimeError(f"{root / TOPICS_FILE}: no `topics` dictionary")


def prose_paragraphs(text: str) -> Iterator[str]:
    """Paragraphs (split at blank lines) that are running text, each joined into one line.

    Dropped: indented lines (code, literal blocks, grammar rules, block quotes), doctest
    prompts, bullet and numbered list items, field lists, headings and table rules, and
    paragraphs that introduce a literal block (ending in ``::``)."""
    for block in re.split(r"\n\s*\n", text.expandtabs()):
        lines = [line.rstrip() for line in block.strip("\n").splitlines() if line.strip()]
        if not lines:
            continue
        if any(
            line[0].isspace()
            or line.lstrip().startswith((">>>", "...", ":", "..", "|", "+"))
            or BULLET_RE.match(line)
            or RULE_LINE_RE.match(line)
            for line in lines
        ):
            continue
        joined = " ".join(line.strip() for line in lines)
        if joined.endswith("::"):
            continue
        yield re.sub(r"\s+", " ", joined)


def split_sentences(paragraph: str) -> list[str]:
    """Cut a paragraph after . ! ? followed by a capital; abbreviations are not cut points."""
    protected = ABBREVIATION_RE.sub(lambda m: m.group(0).replace(".", PROTECTED), paragraph)
    return [s.strip() for s in SENTENCE_END_RE.split(protected) if s.strip()]


def is_prose(sentence: str) -> bool:
    """The filters of the module docstring: a plain English sentence of 8–40 words."""
    if PROTECTED in sentence or not sentence.replace("’", "").isascii():
        return False
    if not sentence[0].isupper() or not sentence.endswith(".") or sentence.endswith(".."):
        return False
    words = sentence[:-1].split(" ")
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    for word in words:
        if not TOKEN_RE.fullmatch(word):
            return False
        letters = word.strip("(),;:")
        bare = letters.lower()
        if bare in CODE_WORDS or bare in BANNED_WORDS:
            return False
        inner_capital = any(c.isupper() for c in letters[1:])  # CamelCase, or an acronym
        if inner_capital and not (letters.isupper() and len(letters) <= MAX_ACRONYM_LETTERS):
            return False
    return sentence.count("(") == sentence.count(")")


def dedup_key(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", sentence.lower()).split())


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def collect(root: Path) -> tuple[list[Sentence], dict[str, int]]:
    """All unique prose sentences of the standard library at root, with the counts per stage."""
    counts = {"files": 0, "documents": 0, "paragraphs": 0, "candidates": 0, "prose": 0}
    documents: list[tuple[str, str]] = []
    for path in stdlib_files(root):
        counts["files"] += 1
        documents.extend(docstrings(path, root))
    documents.extend((f"reference:{topic}", text) for topic, text in reference_topics(root))
    counts["documents"] = len(documents)
    seen: set[str] = set()
    unique: list[Sentence] = []
    for origin, text in documents:
        for paragraph in prose_paragraphs(text):
            counts["paragraphs"] += 1
            for candidate in split_sentences(paragraph):
                counts["candidates"] += 1
                if not is_prose(candidate):
                    continue
                counts["prose"] += 1
                key = dedup_key(candidate)
                if key not in seen:
                    seen.add(key)
                    unique.append(Sentence(candidate, origin))
    counts["unique"] = len(unique)
    return unique, counts


def select(sentences: list[Sentence], n: int) -> list[Sentence]:
    """n sentences by hash-ordered round robin over the origin groups (see module docstring)."""
    if len(sentences) < n:
        raise RuntimeError(f"only {len(sentences)} prose sentences found, {n} wanted")
    groups: dict[str, list[Sentence]] = defaultdict(list)
    for sentence in sentences:
        groups[sentence.group].append(sentence)
    for members in groups.values():
        members.sort(key=lambda s: text_hash(s.text))
    chosen: list[Sentence] = []
    for round_index in range(max(len(m) for m in groups.values())):
        round_ = [m[round_index] for m in groups.values() if round_index < len(m)]
        round_.sort(key=lambda s: text_hash(s.text))
        chosen.extend(round_[: n - len(chosen)])
        if len(chosen) == n:
            break
    return chosen


def render(chosen: list[Sentence], counts: dict[str, int], n_groups: int) -> str:
    """The JSON file, one sentence per line so that diffs stay readable."""
    version = platform.python_version()
    header = {
        "name": "laimco English prose sentences",
        "source": f"CPython {version} standard library: docstrings and pydoc_data/topics.py "
                  "(Language Reference), filtered by scripts/build_corpus.py",
        "license": "PSF-2.0",
        "python_version": version,
        "counts": {**counts, "groups": n_groups, "selected": len(chosen)},
    }
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]  # drop the closing "\n}"
    rows = ",\n".join(
        "  " + json.dumps({"text": s.text, "origin": s.origin}, ensure_ascii=False)
        for s in chosen
    )
    return f'{head},\n "sentences": [\n{rows}\n ]\n}}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the shipped file instead of writing it")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    options = parser.parse_args()
    unique, counts = collect(stdlib_dir())
    n_groups = len({s.group for s in unique})
    text = render(select(unique, N_SENTENCES), counts, n_groups)
    if options.check:
        same = options.output.is_file() and options.output.read_text(encoding="utf-8") == text
        print(f"{options.output}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text, encoding="utf-8")
    print(f"wrote {N_SENTENCES} sentences to {options.output}; counts: {counts}, "
          f"groups: {n_groups}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
