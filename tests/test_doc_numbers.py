"""Every number the README and docs quote from a study is in that study's committed results.

Docs mark each passage (a table or a paragraph) that quotes a study with

    <!-- numbers: results/STUDY -->
    ... the table or paragraph ...
    <!-- /numbers -->

and every numeric literal in it must be found in ``results/STUDY/results.json`` (or in its
config.json: steps, sizes and seeds are quoted too) at its printed precision: a quoted
``0.0745`` matches a value that rounds to it at 4 decimals, ``1.07e-6`` one that has those 3
significant digits. Explicit unit rules: a value may also be printed x100 (percentages of
fractions), / 2**20 (bytes as MiB) or x1000 (seconds as ms); a ``k`` / ``M`` suffix multiplies
the literal by 1e3 / 1e6. A ratio ``Nx`` matches a value, or the ratio of two numbers quoted
in the same passage (which are themselves checked). Not checked: code spans, link targets,
table header rows, integers below 100 written without a separator (counts: "5-step",
"2 cores"), and numbers glued to a word ("mamba2", "top-5", "64x64").

Also: every ``results/<study>/`` holds command.txt, config.json, results.json and report.md,
and every ``results/...`` link or path in the docs exists.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [
    os.path.join(ROOT, "README.md"),
    os.path.join(ROOT, "kernels", "README.md"),
    *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))),
]
STUDY_FILES = ("command.txt", "config.json", "results.json", "report.md")

BLOCK = re.compile(r"<!-- numbers: results/([\w-]+)/? -->(.*?)<!-- /numbers -->", re.S)
NUMBER = re.compile(
    r"(?<![\w.])(?P<num>(?>(?:(?<=[\s|(])-)?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?))"
    r"(?P<unit>%|[xkM](?!\w))?(?![\w.]\w|-[A-Za-z])"
)


def json_numbers(obj) -> list[float]:
    """Every number (not bool) anywhere in a JSON value."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)] if math.isfinite(obj) else []
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in json_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in json_numbers(v)]
    return []


def _prose(text: str) -> list[str]:
    """The passage's lines without code spans, link targets and table header rows."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            continue  # header row: column labels
        if line.startswith("|---") or line.startswith("    "):
            continue  # table separator, indented command block
        line = re.sub(r"`[^`]*`", " ", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        out.append(line)
    return out


def quoted_numbers(text: str) -> list[tuple[str, str]]:
    """(literal, unit) of every checked number in a passage; unit is '', '%', 'x', 'k' or 'M'."""
    found = []
    for line in _prose(text):
        for m in NUMBER.finditer(line):
            lit, unit = m["num"], m["unit"] or ""
            if lit.endswith(","):
                lit = lit.rstrip(",")
            if re.fullmatch(r"-?\d+", lit) and int(lit) < 100 and not unit:
                continue
            found.append((lit, unit))
    return found


def _value(lit: str) -> float:
    return float(lit.replace(",", ""))


def matches(lit: str, v: float) -> bool:
    """Does ``v`` print as ``lit`` (at the literal's decimals, or its significant digits)?"""
    q = _value(lit)
    plain = lit.replace(",", "")
    if "e" in plain.lower():
        mant = plain.lower().split("e")[0]
        sig = len(mant.replace(".", "").lstrip("0")) or 1
        return math.isclose(float(f"{v:.{sig - 1}e}"), q, rel_tol=1e-9)
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    if round(v, decimals) == q or math.isclose(round(v, decimals), q, abs_tol=1e-12):
        return True
    digits = plain.replace(".", "").lstrip("0")
    sig = max(len(digits), 1)
    return v != 0 and math.isclose(float(f"{v:.{sig}g}"), q, rel_tol=1e-9)


SCALES = (1.0, 100.0, 1.0 / 2**20, 1000.0)


def check_passage(text: str, values: list[float]) -> list[str]:
    """The literals of ``text`` that no value of the study explains (empty: all found)."""
    quoted = quoted_numbers(text)
    plain = [_value(lit) for lit, unit in quoted if unit in ("", "%")]
    missing = []
    for lit, unit in quoted:
        per = {"k": 1e-3, "M": 1e-6}.get(unit, 1.0)
        cands = [v * s * per for v in values for s in SCALES]
        if unit == "x":
            cands += [a / b for a in plain for b in plain if b]
        if not any(matches(lit, c) for c in cands):
            missing.append(lit + unit)
    return missing


def study_values(study: str) -> list[float]:
    out = []
    for name in ("results.json", "config.json"):
        with open(os.path.join(ROOT, "results", study, name)) as f:
            out += json_numbers(json.load(f))
    return out


def _passages():
    for path in DOCS:
        text = open(path).read()
        for i, m in enumerate(BLOCK.finditer(text)):
            rel = os.path.relpath(path, ROOT)
            yield pytest.param(rel, m[1], m[2], id=f"{rel}:{m[1]}:{i}")


PASSAGES = list(_passages())


def test_docs_mark_study_numbers():
    assert len(PASSAGES) >= 8, "the docs' study tables carry <!-- numbers: ... --> markers"


@pytest.mark.parametrize("doc, study, text", PASSAGES)
def test_quoted_numbers_are_in_the_study_results(doc, study, text):
    assert os.path.isdir(os.path.join(ROOT, "results", study)), f"{doc}: no results/{study}"
    missing = check_passage(text, study_values(study))
    assert not missing, f"{doc}: numbers not in results/{study}/results.json: {missing}"


@pytest.mark.parametrize("study", sorted(os.listdir(os.path.join(ROOT, "results"))))
def test_every_study_dir_has_the_four_files(study):
    have = set(os.listdir(os.path.join(ROOT, "results", study)))
    assert set(STUDY_FILES) <= have, f"results/{study}: missing {set(STUDY_FILES) - have}"


def test_every_results_link_in_the_docs_exists():
    for path in DOCS:
        base = os.path.dirname(path)
        text = open(path).read()
        for target in re.findall(r"\]\(((?:\.\./)*results/[^)#\s]+)\)", text):
            assert os.path.exists(os.path.normpath(os.path.join(base, target))), (path, target)
        for target in re.findall(r"(?<![\w./])results/[\w-]+/[\w.-]*", text):
            assert os.path.exists(os.path.join(ROOT, target)), (path, target)


# --- the checker itself can fail -----------------------------------------------------------


def test_checker_accepts_printed_rounding_and_units():
    vals = [0.074512, 281948.0, 1.0669e-06, 0.176, 36309064.0, 0.146419]
    text = "eval 0.0745 and 0.07451, 281,948 params, 1.07e-06, 17.6%, 34.6 MB, 146 ms"
    assert check_passage(text, vals) == []


def test_checker_rejects_a_changed_number():
    vals = [0.074512, 0.164, 1.291]
    assert check_passage("NRMSE 0.0745", vals) == []
    assert check_passage("NRMSE 0.0746", vals) == ["0.0746"]
    # a ratio must be a value or the ratio of two numbers the passage quotes
    assert check_passage("0.164 vs 1.291 s: 7.9x slower", vals) == []
    assert check_passage("0.164 vs 1.291 s: 9.9x slower", vals) == ["9.9x"]


def test_a_mutated_doc_copy_fails(tmp_path):
    """Change one quoted digit of a real marked passage: the check must name it. The digit is
    the last of a number with 4+ significant digits, so the changed value cannot be explained
    by another stored value at a coarser precision (a bumped "0.1" may well round from one)."""
    doc, study, text, lit = next(
        (*p.values, lit)
        for p in PASSAGES
        for lit, u in quoted_numbers(p.values[2])
        if "." in lit and not u and len(lit.replace(".", "").lstrip("0")) >= 4
    )
    values = study_values(study)
    assert check_passage(text, values) == []
    head, tail = lit.rsplit(".", 1)
    bumped = f"{head}.{tail[:-1]}{(int(tail[-1]) + 5) % 10}"
    copy = tmp_path / "doc.md"
    copy.write_text(text.replace(lit, bumped, 1))
    assert bumped in check_passage(copy.read_text(), values)
