"""Greedy decoding with llama.cpp (llama-cpp-python), run by the llama.cpp engine venv's python.

    python llama_cpp_greedy.py request.json  ->  JSON on stdout

request: {"model": path, "lora": path or null, "prompts": [[token ids]], "texts": [str],
          "max_tokens": n, "ignore_eos": bool, "threads": n (default 2)}
         or {"requests": [request, ...]}: several models in one process (llama.cpp loads once)
answer:  {"tokens": [[greedy ids]], "tokenized": [[ids of each text]]}, or {"answers": [answer, ...]}

Greedy is the argmax of the logits after each step, so no sampler settings of
llama.cpp's can make it differ from transformers' greedy search.
"""

import json
import sys

import numpy as np
from llama_cpp import Llama


def greedy(request: dict) -> dict:
    llm = Llama(model_path=request["model"], lora_path=request.get("lora"), n_ctx=512, n_batch=512,
                n_threads=request.get("threads", 2), seed=0, verbose=False, logits_all=True)  # eval() keeps logits only then
    eos = llm.token_eos()
    tokens = []
    for prompt in request["prompts"]:
        llm.reset()
        llm.eval(prompt)
        out: list[int] = []
        for _ in range(request["max_tokens"]):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(token)
            if token == eos and not request.get("ignore_eos"):
                break
            llm.eval([token])
        tokens.append(out)
    tokenized = [llm.tokenize(text.encode(), add_bos=False, special=True) for text in request.get("texts", [])]
    return {"tokens": tokens, "tokenized": tokenized}


def main() -> None:
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    if "requests" in request:
        print(json.dumps({"answers": [greedy(r) for r in request["requests"]]}))
    else:
        print(json.dumps(greedy(request)))


if __name__ == "__main__":
    main()
