"""docs/parity.md's agreement table says what the parity suites hold: cases, agreements and deliberate
differences per source (the suites check each case; this checks the counts the page gives)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import test_parity_code
import test_parity_math
import test_parity_rewards

DOC = Path(__file__).resolve().parents[1] / "docs" / "parity.md"
TABLES = {test_parity_math: [test_parity_math.ALL_CASES],
          test_parity_rewards: [test_parity_rewards.FORMAT_CASES, test_parity_rewards.REPETITION_CASES,
                                test_parity_rewards.OVERLONG_CASES, test_parity_rewards.LENGTH_CASES],
          test_parity_code: [test_parity_code.STDOUT_CASES, test_parity_code.CALL_CASES,
                             test_parity_code.PREAMBLE_CASES]}


def test_the_agreement_table_matches_the_suites():
    cases, deliberate = Counter(), Counter()
    for module, tables in TABLES.items():
        ids = [(case[0], case[1]) for table in tables for case in table]
        assert len(ids) == len(set(ids)), f"{module.__name__}: a case id is used twice"
        cases.update(source for source, _ in ids)
        assert set(module.DELIBERATE) <= set(ids), f"{module.__name__}: DELIBERATE names an unknown case"
        deliberate.update(source for source, _ in module.DELIBERATE)
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.fullmatch(r"\| (.+?) \| .+ \| (\d+) \| (\d+) \| (\d+) \|", line)
        if match:
            rows[match[1]] = tuple(int(match[i]) for i in (2, 3, 4))
    expected = {source: (n, n - deliberate[source], deliberate[source]) for source, n in cases.items()}
    assert rows == expected
