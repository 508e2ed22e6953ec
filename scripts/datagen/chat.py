"""General chat turns: short helpful answers assembled from the topic facts."""

from __future__ import annotations

import random

from datagen.topics import Topic

_QUESTIONS = {
    "concept": ("Can you explain {s}?", "Tell me about {s}.", "I'd like to understand {s}. Can you help?",
                "What should I know about {s}?", "Could you give me a simple explanation of {s}?"),
    "advice": ("Any tips on {s}?", "What's your advice on {s}?", "I want to know {s}. Where do I begin?",
               "Could you help me with {s}?", "What are good ways of {s}?"),
}
_OPENERS = ("", "", "Sure. ", "Good question. ", "Happy to help. ", "Here is a short answer. ")
_FOLLOW_UPS = (
    ("Can you say that in one sentence?", "short"),
    ("Thanks! What is the single most important point?", "short"),
    ("Could you list those as bullet points?", "bullets"),
)


def _question(topic: Topic, rng: random.Random) -> str:
    return rng.choice(_QUESTIONS[topic.kind]).format(s=topic.subject)


def _answer(topic: Topic, rng: random.Random) -> tuple[str, list[str]]:
    picked = rng.sample(range(len(topic.facts)), rng.randint(2, min(4, len(topic.facts))))
    facts = [topic.facts[i] for i in sorted(picked)]  # written order reads best
    if topic.kind == "advice" and rng.random() < 0.5:
        body = "\n".join(f"{i}. {f}" for i, f in enumerate(facts, 1))
        return f"{rng.choice(_OPENERS)}Here are a few tips:\n{body}".strip(), facts
    return (rng.choice(_OPENERS) + " ".join(facts)).strip(), facts


def make_chat(topic: Topic, rng: random.Random, multi_turn: bool = False) -> list[dict[str, str]]:
    """A user/assistant exchange (two extra turns when `multi_turn`)."""
    answer, facts = _answer(topic, rng)
    messages = [{"role": "user", "content": _question(topic, rng)}, {"role": "assistant", "content": answer}]
    if multi_turn:
        follow, kind = rng.choice(_FOLLOW_UPS)
        reply = facts[0] if kind == "short" else "\n".join(f"- {f}" for f in facts)
        messages += [{"role": "user", "content": follow}, {"role": "assistant", "content": reply}]
    return messages


def unhelpful_reply(topic: Topic, rng: random.Random) -> str:
    """A vague or off-topic reply, the rejected side of a chat preference pair."""
    return rng.choice((
        "I'm not sure, you could look it up somewhere.",
        f"{topic.subject.capitalize()} is a topic. There is a lot to say about it.",
        "That depends on many things. It is hard to say.",
        "I don't really know much about that, sorry.",
    ))
