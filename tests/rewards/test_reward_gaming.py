"""A policy must not raise its code reward without solving the task.

The four tricks that scored 1.0 against the old in-process harness (issue 12),
each wrapped around a wrong solution, must score 0.0; the graded program must
never see what the grader expects.
"""

from __future__ import annotations

import pytest

import rewards.code as code_module
from rewards.code import code_exec

TESTS = ["assert square(3) == 9", "assert square(-2) == 4", "assert square(5) == 25"]
RIGHT = "def square(x):\n    return x * x\n"
WRONG = "def square(x):\n    return 0\n"

TRICKS = {
    # Find the old pass marker's nonce (or anything like an answer) in its own files and input, and forge passes.
    "harness_file": WRONG + """
import re, sys
seen = open(__file__ if '__file__' in dir() else 'main.py').read() + open('/sandbox/main.py').read()
for token in set(re.findall(r'[0-9a-f]{32}', seen)):
    for i in range(3):
        print(f'{token} PASS {i}')
    print(f'{token} DONE')
print('["9", "4", "25"]' if '25' in seen else '["1", "1", "1"]')
""",
    # Read the caller's frames: the harness's locals held the nonce and the tests.
    "caller_frame": WRONG + """
import sys, json
frame, found = sys._getframe(), []
while frame is not None:
    found += [repr(v) for v in frame.f_locals.values()]
    frame = frame.f_back
text = ' '.join(found)
print(text)
guesses = [s for s in ('9', '4', '25') if s in text]
print(json.dumps(guesses))
""",
    # Replace exec/eval so that whatever the harness runs "passes".
    "replace_exec": WRONG + """
import builtins
builtins.exec = lambda *a, **k: None
builtins.eval = lambda *a, **k: True
builtins.compile = lambda *a, **k: None
""",
    # Return an object equal to everything.
    "always_equal": """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
    def __repr__(self):
        return 'Anything()'

def square(x):
    return Anything()
""",
}


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def test_reward_gaming_tricks_score_zero():
    names = list(TRICKS)
    scores = code_exec([fenced(RIGHT)] + [fenced(TRICKS[n]) for n in names], tests=[TESTS] * (len(names) + 1))
    assert scores[0] == 1.0  # the grader does reward a real solution in the same batch
    assert dict(zip(names, scores[1:], strict=True)) == dict.fromkeys(names, 0.0)


def test_reward_gaming_rigged_values_never_reach_a_comparison():
    # Checks beyond `== literal` go to the judge run; a rigged object still arrives there only as printed text.
    tests = ["assert square(3) in (9, 10)", "assert abs(square(5) - 25) < 1e-9"]
    assert code_exec([fenced(TRICKS["always_equal"])], tests=[tests]) == [0.0]
    assert code_exec([fenced(RIGHT)], tests=[tests]) == [1.0]


def test_reward_gaming_the_program_never_sees_the_answers(monkeypatch):
    """Every sandbox run that holds the candidate's code gets only inputs; answers stay in the parent."""
    runs = []
    real_run = code_module.run_python

    def recording_run(code, **kwargs):
        result = real_run(code, **kwargs)
        runs.append((code, kwargs.get("stdin", ""), result.stdout))
        return result

    monkeypatch.setattr(code_module, "run_python", recording_run)
    answer, judged_answer = "918273645", "564738291"
    snoop = "import sys\nprint(open('main.py').read(), sys.stdin.read(), sys.argv)\n" + RIGHT
    tests = [f"assert square(30303) + 0 == {answer}", f"assert abs(square(2) - {judged_answer}) > 0"]
    code_exec([fenced(snoop)], tests=[tests])
    with_candidate = [r for r in runs if "30303" in r[0] or "30303" in r[1]]
    assert with_candidate, "the candidate's program was never run"
    for program, stdin, stdout in with_candidate:
        assert "print(open('main.py')" in program or "sys.stdin.read()" in program
        for secret in (answer, judged_answer):  # stdout: what the snooping program found and printed
            assert secret not in program and secret not in stdin and secret not in stdout
    judge = [r for r in runs if judged_answer in r[0]]
    assert judge and all("print(open('main.py')" not in program for program, _, _ in judge)


@pytest.mark.parametrize("value", ["[1, 2]", "{'a': (1, 2.5)}", "'text'", "None", "b'x'", "{1, 2}", "set()", "-3"])
def test_reward_gaming_plain_data_round_trips(value):
    # The other side of the rule: ordinary return values are compared, not rejected.
    reply = fenced(f"def f():\n    return {value}\n")
    assert code_exec([reply], tests=[[f"assert f() == {value}"]]) == [1.0]
