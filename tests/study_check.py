"""The check every study producer's smoke test makes on the study folder it wrote."""

from __future__ import annotations

import json
import os
import re

from jaxfm.provenance import STUDY_FILES
from tests.test_doc_numbers import check_passage, json_numbers


def assert_study(directory, command_prefix: str, extra: tuple[str, ...] = ()) -> dict:
    """``directory`` holds command.txt, config.json, results.json, report.md (and ``extra``);
    command.txt starts with ``command_prefix``; both JSON files parse; every number report.md
    prints is in results.json or config.json (at its printed precision, by the rules of
    ``tests/test_doc_numbers.py``; absolute paths in the report are not read). Returns the
    parsed results."""
    directory = str(directory)
    have = set(os.listdir(directory))
    assert set(STUDY_FILES) | set(extra) <= have, (directory, sorted(have))
    command = open(os.path.join(directory, "command.txt")).read()
    assert command.startswith(command_prefix), command
    results = json.load(open(os.path.join(directory, "results.json")))
    config = json.load(open(os.path.join(directory, "config.json")))
    report = open(os.path.join(directory, "report.md")).read()
    assert report.strip(), "empty report.md"
    report = re.sub(r"(?<![\w.])/[\w./+-]+", " ", report)
    missing = check_passage(report, json_numbers(results) + json_numbers(config))
    assert not missing, f"report.md numbers not in results.json/config.json: {missing}"
    return results
