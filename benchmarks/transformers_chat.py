"""Run by the trainers' venv (benchmarks/.venv-trainers, which has transformers): renders and
tokenizes conversations with ``transformers``' own ``apply_chat_template`` and writes what it
gives, for tests/chat/test_transformers_parity.py to compare with Refinery's.

    benchmarks/.venv-trainers/bin/python benchmarks/transformers_chat.py CASES.json OUT.json

CASES.json: ``tokenizer_file``, ``special_tokens`` (bos/eos/pad token strings),
``template`` (its text) and ``conversations`` (each ``messages`` and ``tools`` as
``apply_chat_template`` takes them). OUT.json: per conversation, the rendered ``text``,
``input_ids`` and ``assistant_masks`` (``return_assistant_tokens_mask=True``).
"""

from __future__ import annotations

import json
import sys


def main(cases_path: str, out_path: str) -> None:
    from transformers import PreTrainedTokenizerFast

    cases = json.loads(open(cases_path, encoding="utf-8").read())
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=cases["tokenizer_file"], **cases["special_tokens"])
    tokenizer.chat_template = cases["template"]
    results = []
    for conversation in cases["conversations"]:
        kwargs = {"tools": conversation.get("tools")}
        text = tokenizer.apply_chat_template(conversation["messages"], tokenize=False, **kwargs)
        encoded = tokenizer.apply_chat_template(
            conversation["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
        )
        results.append(
            {"text": text, "input_ids": list(encoded["input_ids"]), "assistant_masks": list(encoded["assistant_masks"])}
        )
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
