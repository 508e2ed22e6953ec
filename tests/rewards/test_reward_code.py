from __future__ import annotations

import json

import pytest

from rewards.code import code_exec, extract_code, split_tests

SQUARE = "def square(x):\n    return x * x\n"
TESTS = ["assert square(2) == 4", "assert square(-3) == 9", "assert square(0) == 0"]


def fenced(code, lang="python"):
    return f"Here you go:\n```{lang}\n{code}```\nHope it helps."


def test_reward_code_all_pass_partial_and_none():
    wrong = "def square(x):\n    return x + x\n"
    scores = code_exec([fenced(SQUARE), fenced(wrong), "no code here"], tests=[TESTS] * 3)
    assert scores == [1.0, pytest.approx(2 / 3), 0.0]


def test_reward_code_raw_and_conversational():
    convo = [{"role": "assistant", "content": fenced(SQUARE)}]
    assert code_exec([SQUARE, convo], tests=[TESTS, TESTS]) == [1.0, 1.0]


def test_reward_code_tests_as_one_string():
    assert code_exec([fenced(SQUARE)], tests=["\n".join(TESTS)]) == [1.0]
    assert code_exec([fenced(SQUARE)], tests=['["assert square(1) == 1"]']) == [1.0]


def test_reward_code_failures_score_zero():
    cases = [
        fenced("def square(x) return x"),  # syntax error
        fenced("raise RuntimeError('boom')\n"),  # fails at load
        fenced("import sys\nsys.exit(0)\n"),  # exits before the tests
        fenced("import os\nos._exit(0)\n"),
        fenced("while True:\n    pass\n"),  # timeout
    ]
    assert code_exec(cases, tests=[TESTS] * len(cases), timeout_s=1) == [0.0] * len(cases)


def test_reward_code_cannot_fake_passes_by_printing():
    fake = fenced("for i in range(3):\n    print('PASS', i)\nprint('DONE')\n" + "def square(x):\n    return 0\n")
    assert code_exec([fake], tests=[TESTS]) == [pytest.approx(1 / 3)]


def test_reward_code_main_guard_does_not_run():
    code = SQUARE + "if __name__ == '__main__':\n    input()\n"
    assert code_exec([fenced(code)], tests=[TESTS]) == [1.0]


def test_reward_code_one_failing_test_does_not_stop_the_others():
    tests = ["assert square(2) == 5", "assert square('a') == 'aa'", "assert undefined(3) == 9",
             "assert square(3) == 9"]
    assert code_exec([fenced(SQUARE)], tests=[tests]) == [pytest.approx(1 / 4)]


def test_reward_code_checks_beyond_equality_are_judged_outside():
    # Not `== literal`: the parent hands the printed values to a judge run that holds no candidate code.
    tests = ["assert abs(square(1.5) - 2.25) < 1e-9", "assert sorted([square(2), square(1)]) == [1, 4]",
             "assert isinstance(square(2), int) and square(2) > 3", "assert square(2) != 4",
             "assert math.isclose(square(0.1), 0.01)"]
    assert code_exec([fenced(SQUARE)], tests=[tests]) == [pytest.approx(4 / 5)]


def test_reward_code_input_output_cases():
    program = fenced("n = int(input())\nprint(n * n)\n")
    cases = [{"input": "3\n", "output": "9\n"}, {"input": "4", "output": "16  \n\n"}, {"input": "5", "output": "24"}]
    assert code_exec([program], tests=[cases]) == [pytest.approx(2 / 3)]
    assert code_exec([program], tests=[{"inputs": ["2"], "outputs": ["4"]}]) == [1.0]
    assert code_exec([program], tests=[json.dumps(cases)]) == [pytest.approx(2 / 3)]


def test_reward_code_tests_the_grader_cannot_run_outside_are_refused():
    for bad in ["raise SystemExit", "for i in range(3):\n    assert square(i) == i * i",
                "assert all(square(i) == i * i for i in range(3))", "x = square(2)"]:
        with pytest.raises(ValueError, match="assert"):
            code_exec([fenced(SQUARE)], tests=[[bad]])


def test_reward_code_no_tests_scores_zero():
    assert code_exec([fenced(SQUARE)], tests=[[]]) == [0.0]


def test_reward_extract_code_prefers_last_python_block():
    text = "```python\nx = 1\n```\nthen\n```python\nx = 2\n```\n```text\nlog\n```"
    assert extract_code(text) == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("```py\nz = 4\n```") == "z = 4\n"


def test_reward_split_tests():
    src = "assert f(1) == 1\nfor i in range(3):\n    assert f(i) == i\n"
    assert split_tests(src) == ["assert f(1) == 1", "for i in range(3):\n    assert f(i) == i"]
    assert split_tests([{"input": "1", "output": "2"}]) == [{"input": "1", "output": "2"}]
    with pytest.raises(ValueError, match="2 inputs but outputs"):
        split_tests({"inputs": ["1", "2"], "outputs": ["1"]})
    assert split_tests(None) == []
    with pytest.raises(ValueError, match="do not parse"):
        split_tests("assert (")
