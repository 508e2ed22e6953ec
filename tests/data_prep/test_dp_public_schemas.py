"""Famous public datasets, each in its exact column layout, load with no column mapping.

Every file is written here, in tmp_path, with a few realistic rows shaped like
the dataset on the hub (same column names, nesting and oddities such as
ShareGPT `weight` keys or GSM8K calculator annotations).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep import DatasetSpec, prepare_dataset, read_rows
from rewards.math import exact_number

U, A, S = "user", "assistant", "system"


def m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def prepare(tmp_path: Path, file: str, kind: str, **source: Any):
    spec = DatasetSpec.model_validate({"kind": kind, "sources": [{"path": file, **source}], "shuffle": False})
    out = prepare_dataset(
        f"{kind}-{Path(file).stem}", spec, base_dir=tmp_path, out_dir=tmp_path / f"out-{kind}"
    )
    assert out.report["balance"]["ok"]
    return out, read_rows(out.train_path)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


# ---------------------------------------------------------------- chat


def test_ultrachat_200k_and_tulu_3_messages(tmp_path):
    ultrachat = [
        {
            "prompt": "How does photosynthesis work?",
            "prompt_id": "a1f3",
            "messages": [
                m(U, "How does photosynthesis work?"),
                m(A, "Plants turn light, water and CO2 into sugar and oxygen."),
                m(U, "Where does it happen?"),
                m(A, "In the chloroplasts of leaf cells."),
            ],
        },
        {
            "prompt": "Write a haiku about rain.",
            "prompt_id": "b2c4",
            "messages": [
                m(U, "Write a haiku about rain."),
                m(A, "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky"),
            ],
        },
    ]
    tulu = [
        {
            "id": "oasst1_1",
            "messages": [m(S, "You are Tulu."), m(U, "Name a prime."), m(A, "7 is prime.")],
            "source": "oasst1",
        },
        {
            "id": "flan_2",
            "messages": [m(U, "Translate 'merci' to English."), m(A, "Thank you.")],
            "source": "flan",
        },
    ]
    write_jsonl(tmp_path / "ultrachat.jsonl", ultrachat)
    write_jsonl(tmp_path / "tulu.jsonl", tulu)
    out, rows = prepare(tmp_path, "ultrachat.jsonl", "chat")
    assert rows == [{"messages": r["messages"]} for r in ultrachat]
    assert out.report["sources"][0]["formats"] == {"messages": 2}
    _, rows = prepare(tmp_path, "tulu.jsonl", "chat")
    assert rows == [{"messages": r["messages"]} for r in tulu]


def test_openhermes_and_slimorca_sharegpt_with_system_turns(tmp_path):
    rows_in = [
        {  # OpenHermes-2.5: extra metadata columns, often null
            "conversations": [
                {"from": "system", "value": "You are a math tutor.", "weight": None},
                {"from": "human", "value": "What is 12 * 3?", "weight": None},
                {"from": "gpt", "value": "12 * 3 = 36.", "weight": None},
            ],
            "source": "glaive-code-assist",
            "category": None,
            "skip_prompt_formatting": False,
        },
        {  # SlimOrca: system turn, weights 0.0 / 1.0
            "conversations": [
                {"from": "system", "value": "You are an AI assistant. Explain step by step.", "weight": None},
                {"from": "human", "value": "Is the sky green?", "weight": 0.0},
                {"from": "gpt", "value": "No. It looks blue because of Rayleigh scattering.", "weight": 1.0},
            ]
        },
    ]
    write_jsonl(tmp_path / "hermes.jsonl", rows_in)
    out, rows = prepare(tmp_path, "hermes.jsonl", "chat")
    assert rows[0] == {
        "messages": [m(S, "You are a math tutor."), m(U, "What is 12 * 3?"), m(A, "12 * 3 = 36.")]
    }
    assert rows[1]["messages"][0] == m(S, "You are an AI assistant. Explain step by step.")
    assert out.report["sources"][0]["formats"] == {"sharegpt": 2}


def test_openassistant_chatml_llama3_and_human_assistant_text(tmp_path):
    chatml = (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n"
        "<|im_start|>assistant\nRome.<|im_end|>\n"
    )
    llama3 = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
    )
    human = "\n\nHuman: Give me a synonym for happy.\n\nAssistant: Joyful."
    ambiguous = "<|im_start|>user\nhi<|im_end|><|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"
    unclosed = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello"
    write_jsonl(
        tmp_path / "oasst_top1.jsonl",
        [{"text": chatml}, {"text": llama3}, {"text": human}, {"text": ambiguous}, {"text": unclosed}],
    )
    spec = DatasetSpec.model_validate(
        {"sources": [{"path": "oasst_top1.jsonl"}], "shuffle": False, "max_reject_fraction": 0.5}
    )
    out = prepare_dataset("oasst", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    assert read_rows(out.train_path) == [
        {
            "messages": [
                m(U, "What is the capital of France?"),
                m(A, "Paris."),
                m(U, "And of Italy?"),
                m(A, "Rome."),
            ]
        },
        {"messages": [m(S, "Be brief."), m(U, "Hi!"), m(A, "Hello.")]},
        {"messages": [m(U, "Give me a synonym for happy."), m(A, "Joyful.")]},
    ]
    assert out.report["sources"][0]["formats"] == {"chatml": 1, "llama3": 1, "human_assistant": 1}
    rejects = {r["line"]: r for r in read_rows(tmp_path / "out" / "rejects.jsonl")}
    assert rejects[4]["reason"] == "ambiguous_transcript" and rejects[4]["source"] == "oasst_top1.jsonl"
    assert rejects[5]["reason"] == "bad_transcript" and "not closed" in rejects[5]["detail"]


def test_dolly_and_metamathqa_presets(tmp_path):
    dolly = [
        {
            "instruction": "When did Virgin Australia start operating?",
            "context": "Virgin Australia commenced services on 31 August 2000 as Virgin Blue.",
            "response": "Virgin Australia started operating on 31 August 2000.",
            "category": "closed_qa",
        },
        {
            "instruction": "Name three primary colors.",
            "context": "",
            "response": "Red, yellow and blue.",
            "category": "open_qa",
        },
    ]
    metamath = [
        {
            "type": "GSM_Rephrased",
            "query": "Tom has 3 boxes of 4 pens. How many pens?",
            "original_question": "Tom buys 3 boxes with 4 pens each. How many pens does he have?",
            "response": "3 boxes * 4 pens = 12 pens.\nThe answer is: 12",
        }
    ]
    write_jsonl(tmp_path / "dolly.jsonl", dolly)
    write_jsonl(tmp_path / "metamath.jsonl", metamath)
    out, rows = prepare(tmp_path, "dolly.jsonl", "chat")
    assert rows[0]["messages"] == [
        m(
            U,
            "When did Virgin Australia start operating?\n\nVirgin Australia commenced services on 31 August 2000 as Virgin Blue.",
        ),
        m(A, "Virgin Australia started operating on 31 August 2000."),
    ]
    assert rows[1]["messages"] == [m(U, "Name three primary colors."), m(A, "Red, yellow and blue.")]
    assert out.report["sources"][0]["formats"] == {"dolly": 2}
    _, rows = prepare(tmp_path, "dolly.jsonl", "prompt", format="dolly")
    assert rows[1] == {
        "prompt": [m(U, "Name three primary colors.")],
        "answer": "Red, yellow and blue.",
        "category": "open_qa",
    }
    _, rows = prepare(tmp_path, "metamath.jsonl", "chat")
    assert rows == [{"messages": [m(U, metamath[0]["query"]), m(A, metamath[0]["response"])]}]
    _, rows = prepare(tmp_path, "metamath.jsonl", "prompt")
    assert rows[0]["answer"] == metamath[0]["response"] and rows[0]["type"] == "GSM_Rephrased"
    assert exact_number(["So 12 pens. Answer: 12"], answer=[rows[0]["answer"]]) == [1.0]


def test_gsm8k_prompts_keep_their_gold_answer_for_rewards(tmp_path):
    gsm8k = [
        {
            "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
            "in May. How many clips did Natalia sell altogether in April and May?",
            "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
            "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
        },
        {
            "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
            "How much did she earn?",
            "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
            "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
        },
    ]
    write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k)
    out, rows = prepare(tmp_path, "gsm8k.jsonl", "prompt")
    assert rows == [{"prompt": [m(U, r["question"])], "answer": r["answer"]} for r in gsm8k]
    assert out.report["sources"][0]["formats"] == {"gsm8k": 2}
    assert exact_number(["... Answer: 72", "Answer: 11"], answer=[r["answer"] for r in rows]) == [1.0, 0.0]
    _, rows = prepare(tmp_path, "gsm8k.jsonl", "chat")
    assert rows[0]["messages"][1] == m(
        A,
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72",
    )


# ---------------------------------------------------------------- preference


def _ultrafeedback_rows() -> list[dict[str, Any]]:
    rows = []
    for i, (q, good, bad) in enumerate(
        [
            ("How many legs does a spider have?", "Spiders have eight legs.", "Spiders have six legs."),
            ("Suggest a name for a cat.", "How about Miso?", "Cat."),
            (
                "Explain recursion briefly.",
                "A function that calls itself on a smaller input.",
                "It is a loop.",
            ),
        ]
    ):
        chosen, rejected = [m(U, q), m(A, good)], [m(U, q), m(A, bad)]
        rows.append(
            {
                "prompt": q,
                "prompt_id": f"{i:064x}",
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": 9.0,
                "score_rejected": 4.5,
            }
        )
    return rows


def write_ultrafeedback(path: Path) -> list[dict[str, Any]]:
    """HuggingFaceH4/ultrafeedback_binarized ships Parquet with nested message lists."""
    rows = _ultrafeedback_rows()
    pq.write_table(pa.Table.from_pylist(rows), path)
    return rows


def test_ultrafeedback_binarized_is_a_preference_set_and_a_chat_set(tmp_path):
    uf = write_ultrafeedback(tmp_path / "ultrafeedback.parquet")
    out, rows = prepare(tmp_path, "ultrafeedback.parquet", "preference")
    assert rows == [
        {
            "prompt": [m(U, r["prompt"])],
            "chosen": r["chosen"][1]["content"],
            "rejected": r["rejected"][1]["content"],
        }
        for r in uf
    ]
    assert out.report["sources"][0]["formats"] == {"preference": 3}
    # The same rows in a chat dataset: the kind picks the `messages` reading.
    out, rows = prepare(tmp_path, "ultrafeedback.parquet", "chat")
    assert rows == [{"messages": r["messages"]} for r in uf]
    assert out.report["sources"][0]["formats"] == {"messages": 3}


def test_hh_rlhf_transcripts_with_multi_turn_history(tmp_path):
    history = "\n\nHuman: What can I cook tonight?\n\nAssistant: Pasta is quick.\n\nHuman: Without tomatoes?"
    hh = [
        {
            "chosen": history + "\n\nAssistant: Try aglio e olio: garlic, olive oil and chili.",
            "rejected": history + "\n\nAssistant: Just order a pizza.",
        },
        {
            "chosen": "\n\nHuman: What is 2 + 2?\n\nAssistant: 2 + 2 = 4.",
            "rejected": "\n\nHuman: What is 2 + 2?\n\nAssistant: 5, obviously.",
        },
    ]
    write_jsonl(tmp_path / "hh.jsonl.gz", hh)  # Anthropic/hh-rlhf ships gzipped JSONL
    out, rows = prepare(tmp_path, "hh.jsonl.gz", "preference")
    assert rows[0] == {
        "prompt": [m(U, "What can I cook tonight?"), m(A, "Pasta is quick."), m(U, "Without tomatoes?")],
        "chosen": "Try aglio e olio: garlic, olive oil and chili.",
        "rejected": "Just order a pizza.",
    }
    assert rows[1] == {
        "prompt": [m(U, "What is 2 + 2?")],
        "chosen": "2 + 2 = 4.",
        "rejected": "5, obviously.",
    }
    assert out.report["sources"][0]["formats"] == {"hh_rlhf": 2}


def test_capybara_full_conversation_pairs_keep_history(tmp_path):
    chosen = [m(U, "Compute 6 * 7."), m(A, "42"), m(U, "Now divide it by 2."), m(A, "42 / 2 = 21.")]
    rejected = [*chosen[:3], m(A, "20.")]
    capybara = [
        {
            "source": "GOAT",
            "prompt": "Compute 6 * 7.",  # the first user turn; the pair answers the last one
            "chosen": chosen,
            "chosen_rating": 5,
            "chosen_model": "gpt-4",
            "rejected": rejected,
            "rejected_rating": 2,
            "rejected_model": "notus",
        }
    ]
    write_jsonl(tmp_path / "capybara.jsonl", capybara)
    _, rows = prepare(tmp_path, "capybara.jsonl", "preference")
    assert rows == [{"prompt": chosen[:3], "chosen": "42 / 2 = 21.", "rejected": "20."}]


# ---------------------------------------------------------------- unpaired


def test_kto_mix_and_pairs_split_into_unpaired_rows(tmp_path):
    kto = [
        {"prompt": [m(U, "Is water wet?")], "completion": [m(A, "Yes, in everyday terms.")], "label": True},
        {"prompt": [m(U, "Capital of Peru?")], "completion": [m(A, "Buenos Aires.")], "label": False},
        {"prompt": "Say hi.", "completion": "hi", "label": "true"},  # CSV-ish text label
    ]
    write_jsonl(tmp_path / "kto_mix.jsonl", kto)
    out, rows = prepare(tmp_path, "kto_mix.jsonl", "unpaired")
    assert rows == [
        {"prompt": [m(U, "Is water wet?")], "completion": "Yes, in everyday terms.", "label": True},
        {"prompt": [m(U, "Capital of Peru?")], "completion": "Buenos Aires.", "label": False},
        {"prompt": [m(U, "Say hi.")], "completion": "hi", "label": True},
    ]
    assert out.report["sources"][0]["formats"] == {"kto": 3}

    uf = write_ultrafeedback(tmp_path / "uf.parquet")
    out, rows = prepare(tmp_path, "uf.parquet", "unpaired")
    assert rows[:2] == [
        {"prompt": [m(U, uf[0]["prompt"])], "completion": "Spiders have eight legs.", "label": True},
        {"prompt": [m(U, uf[0]["prompt"])], "completion": "Spiders have six legs.", "label": False},
    ]
    b = out.report["balance"]
    assert (b["read"], b["out"], b["added"]) == (3, 6, 3) and out.report["steps"][0]["details"] == {
        "pairs_split": 3
    }


def test_unpaired_eval_split_keeps_both_rows_of_a_pair_together(tmp_path):
    write_ultrafeedback(tmp_path / "uf.parquet")
    spec = DatasetSpec.model_validate(
        {"kind": "unpaired", "sources": [{"path": "uf.parquet"}], "eval_split": 0.34}
    )
    out = prepare_dataset("u", spec, base_dir=tmp_path, out_dir=tmp_path / "out")
    train_prompts = {r["prompt"][0]["content"] for r in read_rows(out.train_path)}
    eval_rows = read_rows(out.eval_path)
    assert len(eval_rows) == 2 and {r["label"] for r in eval_rows} == {True, False}
    assert eval_rows[0]["prompt"][0]["content"] not in train_prompts
