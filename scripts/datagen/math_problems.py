"""Templated arithmetic word problems with exact integer answers.

Every problem knows its worked solution (one line per step) and a few
plausible wrong answers ("slips"), which feed multiple-choice distractors and
the rejected side of preference pairs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

ANSWER_INSTRUCTION = 'End your reply with "Answer: <number>".'

NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Noah", "he"), ("Zoe", "she"), ("Omar", "he"),
    ("Lena", "she"), ("Ravi", "he"), ("Sara", "she"), ("Tom", "he"), ("Ines", "she"), ("Kenji", "he"),
    ("Nora", "she"), ("Diego", "he"), ("Amara", "she"), ("Felix", "he"), ("Priya", "she"), ("Jonas", "he"),
    ("Chloe", "she"), ("Mateo", "he"), ("Hana", "she"), ("Samir", "he"), ("Elsa", "she"), ("Luca", "he"),
    ("Maya", "she"), ("Ivan", "he"), ("Yara", "she"), ("Ben", "he"), ("Aiko", "she"), ("Theo", "he"),
)
ITEMS: tuple[str, ...] = (
    "apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards",
    "balloons", "oranges", "crayons", "coins", "buttons", "beads", "candles", "eggs", "cupcakes",
    "postcards", "toy cars", "seeds", "notebooks", "lemons", "ribbons",
)
_POSSESSIVE = {"she": "her", "he": "his"}


@dataclass
class Problem:
    template: str
    question: str
    steps: list[str]
    answer: int
    slips: list[int] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return f"{self.question} {ANSWER_INSTRUCTION}"

    def solution(self) -> str:
        return "\n".join([*self.steps, f"Answer: {self.answer}"])


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(NAMES)


def _buy_give(rng: random.Random) -> Problem:
    name, pro = _person(rng)
    item = rng.choice(ITEMS)
    a, b = rng.randint(5, 40), rng.randint(2, 30)
    c = rng.randint(1, a + b - 1)
    mid = a + b
    ans = mid - c
    q = (f"{name} has {a} {item}, buys {b} more and gives away {c}. "
         f"How many {item} does {pro} have now?")
    steps = [f"{name} starts with {a} {item}.", f"After buying {b} more: {a} + {b} = {mid}.",
             f"After giving away {c}: {mid} - {c} = {ans}."]
    return Problem("buy_give", q, steps, ans, [a + b + c, mid, abs(a - b - c)])


def _boxes(rng: random.Random) -> Problem:
    name, _ = _person(rng)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    ans = a * b
    q = f"{name} packs {a} boxes with {b} {item} in each box. How many {item} are packed in total?"
    steps = [f"There are {a} boxes with {b} {item} each.", f"{a} × {b} = {ans}."]
    return Problem("boxes", q, steps, ans, [a + b, ans + b, ans - a])


def _share(rng: random.Random) -> Problem:
    name, _ = _person(rng)
    item = rng.choice(ITEMS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    q = (f"{name} shares {total} {item} equally among {friends} friends. "
         f"How many {item} does each friend get?")
    steps = [f"{total} {item} are split into {friends} equal parts.", f"{total} ÷ {friends} = {each}."]
    return Problem("share", q, steps, each, [total - friends, each + 1, friends])


def _change(rng: random.Random) -> Problem:
    name, pro = _person(rng)
    thing = rng.choice(("notebook", "sandwich", "ticket", "plant", "mug", "puzzle", "scarf"))
    price, n = rng.randint(2, 15), rng.randint(2, 6)
    bill = next(b for b in (20, 50, 100) if b > price * n)
    cost = price * n
    ans = bill - cost
    q = (f"A {thing} costs {price} dollars. {name} buys {n} of them and pays with a {bill}-dollar bill. "
         f"How much change does {pro} get, in dollars?")
    steps = [f"{n} {thing}s cost {n} × {price} = {cost} dollars.", f"Change: {bill} - {cost} = {ans}."]
    return Problem("change", q, steps, ans, [bill - price, cost, ans + price])


def _together(rng: random.Random) -> Problem:
    (n1, _), (n2, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, more = rng.randint(5, 50), rng.randint(2, 20)
    b = a + more
    ans = a + b
    q = (f"{n1} has {a} {item}. {n2} has {more} more {item} than {n1}. "
         f"How many {item} do they have together?")
    steps = [f"{n2} has {a} + {more} = {b} {item}.", f"Together: {a} + {b} = {ans}."]
    return Problem("together", q, steps, ans, [a + more, ans + more, b])


def _savings(rng: random.Random) -> Problem:
    name, _ = _person(rng)
    per, weeks = rng.randint(3, 20), rng.randint(2, 10)
    saved = per * weeks
    spent = rng.randint(1, saved - 1)
    ans = saved - spent
    q = (f"{name} saves {per} dollars every week for {weeks} weeks and then spends {spent} dollars. "
         f"How many dollars are left?")
    steps = [f"Saved: {per} × {weeks} = {saved} dollars.", f"Left: {saved} - {spent} = {ans}."]
    return Problem("savings", q, steps, ans, [saved, per + weeks - spent if per + weeks > spent else spent, ans + per])


def _speed(rng: random.Random) -> Problem:
    vehicle = rng.choice(("train", "bus", "truck", "boat", "cyclist"))
    speed, hours = rng.randrange(10, 95, 5), rng.randint(2, 6)
    ans = speed * hours
    q = f"A {vehicle} travels {speed} kilometers every hour. How many kilometers does it travel in {hours} hours?"
    steps = ["Distance = speed × time.", f"{speed} × {hours} = {ans}."]
    return Problem("speed", q, steps, ans, [speed + hours, ans - speed, ans + speed])


def _pages(rng: random.Random) -> Problem:
    name, pro = _person(rng)
    per_day, days = rng.randint(5, 30), rng.randint(2, 7)
    read = per_day * days
    total = read + rng.randint(5, 120)
    ans = total - read
    q = (f"A book has {total} pages. {name} reads {per_day} pages a day for {days} days. "
         f"How many pages does {pro} still have to read?")
    steps = [f"Pages read: {per_day} × {days} = {read}.", f"Pages left: {total} - {read} = {ans}."]
    return Problem("pages", q, steps, ans, [read, total - per_day, ans + days])


def _seats(rng: random.Random) -> Problem:
    place = rng.choice(("hall", "theater", "classroom", "cinema", "church"))
    rows, per_row = rng.randint(3, 15), rng.randint(4, 12)
    seats = rows * per_row
    taken = rng.randint(1, seats - 1)
    ans = seats - taken
    q = (f"A {place} has {rows} rows with {per_row} chairs in each row. {taken} chairs are taken. "
         f"How many chairs are empty?")
    steps = [f"Chairs: {rows} × {per_row} = {seats}.", f"Empty: {seats} - {taken} = {ans}."]
    return Problem("seats", q, steps, ans, [seats, rows + per_row, ans + 1])


def _compare(rng: random.Random) -> Problem:
    (n1, _), (n2, _) = rng.sample(NAMES, 2)
    item = rng.choice(("strawberries", "cherries", "shells", "mushrooms", "flowers", "acorns"))
    a, b = rng.randint(5, 30), rng.randint(5, 30)
    total = a + b
    c = rng.randint(1, total - 1)
    ans = total - c
    q = (f"{n1} picked {a} {item} in the morning and {b} in the afternoon. {n2} picked {c} {item}. "
         f"How many more {item} did {n1} pick than {n2}?")
    steps = [f"{n1} picked {a} + {b} = {total}.", f"Difference: {total} - {c} = {ans}."]
    return Problem("compare", q, steps, ans, [total + c, abs(a - c), total])


def _expression(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 40), rng.randint(2, 12), rng.randint(2, 12)
    form = rng.randrange(3)
    if form == 0:
        prod = b * c
        ans = a + prod
        q = f"What is {a} + {b} × {c}?"
        steps = [f"Multiply first: {b} × {c} = {prod}.", f"Then add: {a} + {prod} = {ans}."]
        slips = [(a + b) * c, ans + 1, a + b + c]
    elif form == 1:
        big = a + b * c
        ans = big - a
        q = f"Calculate {big} - {a}."
        steps = [f"{big} - {a} = {ans}."]
        slips = [big + a, ans + 10, ans - 1]
    else:
        ans = (a + b) * c
        q = f"What is ({a} + {b}) × {c}?"
        steps = [f"Brackets first: {a} + {b} = {a + b}.", f"Then multiply: {a + b} × {c} = {ans}."]
        slips = [a + b * c, ans - c, ans + c]
    return Problem("expression", q, steps, ans, slips)


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _buy_give, _boxes, _share, _change, _together, _savings, _speed, _pages, _seats, _compare, _expression,
)


def make_problem(rng: random.Random) -> Problem:
    return rng.choice(TEMPLATES)(rng)


def distractors(problem: Problem, rng: random.Random, k: int = 3) -> list[int]:
    """k distinct wrong non-negative answers, plausible ones (slips) first."""
    out: list[int] = []
    pool = [*problem.slips, problem.answer + 1, problem.answer - 1, problem.answer + 10,
            problem.answer * 2, problem.answer + 2, problem.answer - 2, problem.answer + 5]
    for v in pool:
        if v >= 0 and v != problem.answer and v not in out:
            out.append(v)
    head, tail = out[: len(problem.slips)], out[len(problem.slips):]
    rng.shuffle(head)
    return (head + tail)[:k]


def possessive(pronoun: str) -> str:
    return _POSSESSIVE[pronoun]
