"""Run by the llama.cpp engine venv's python (imports nothing of posttrain): what llama-cpp-python's server does.

    python llama_cpp_probe.py request.json  ->  JSON on stdout

request: {"model": path, "conversations": [[message, ...]], "greedy": [[token ids]], "max_tokens": n}
answer:  {"chat_format": name, "prompts": [text], "prompt_tokens": [[ids]], "greedy": [[ids]]}

The prompt is rendered the way the server's chat handler renders it when no
--chat_format is given (llama.py picks the format, llama_chat_format renders
it, then tokenizes with add_bos unless the template added special tokens).
Greedy decoding is the argmax after each step, so no sampler setting matters.
"""

import json
import sys

import numpy as np
from llama_cpp import Llama, llama_chat_format


def formatter(llm):
    """The chat formatter the server would use for this file."""
    if llm.chat_format == "chat_template.default":
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        return llama_chat_format.Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
    name = {"llama-3": "format_llama3"}.get(llm.chat_format, "format_" + llm.chat_format.replace("-", "_"))
    return getattr(llama_chat_format, name)


def main() -> None:
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    greedy_prompts = request.get("greedy") or []
    llm = Llama(model_path=request["model"], n_ctx=2048, n_batch=512, n_threads=2, seed=0, verbose=False,
                vocab_only=not greedy_prompts, logits_all=bool(greedy_prompts))
    render = formatter(llm)
    prompts, prompt_tokens = [], []
    for messages in request.get("conversations", []):
        result = render(messages=messages)
        prompts.append(result.prompt)
        added = bool(getattr(result, "added_special", False))
        prompt_tokens.append(llm.tokenize(result.prompt.encode("utf-8"), add_bos=not added, special=True))
    greedy = []
    eos = llm.token_eos()
    for prompt in greedy_prompts:
        llm.reset()
        llm.eval(prompt)
        out = []
        for _ in range(request.get("max_tokens", 16)):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(token)
            if token == eos:
                break
            llm.eval([token])
        greedy.append(out)
    print(json.dumps({"chat_format": llm.chat_format, "prompts": prompts, "prompt_tokens": prompt_tokens,
                      "greedy": greedy}))


if __name__ == "__main__":
    main()
