"""Chat data for fine-tuning: render with a chat template + tokenize + loss mask (and pack)
against a raw ``tokenizers`` ``encode_batch`` over the same rendered strings, one core.

Conversations: LLaMA-Factory's Alpaca and Glaive tool-call samples from ../shared/data/sft,
repeated to ``--conversations``. Tokenizer: a byte-level BPE ``tokenizer.json`` (8,000
tokens, ChatML's special tokens) trained by ``refinery train-tokenizer`` on the sample
corpus. Template: the built-in ChatML, or ``--template`` (a ../shared/data/chat_templates
name). Sides, in fresh processes, interleaved over ``--rounds``:

- ``encode_batch``: the tokenizer's ``encode_batch`` of the rendered strings (rendered
  beforehand, outside the timing);
- ``refinery``: ``ChatTemplate.render`` (the text and its assistant spans) and
  ``tokenize_conversations`` (ids and the loss mask) of each conversation;
- ``refinery_pack``: the same, then ``pack_conversations`` at ``--seq-len`` (best fit
  decreasing); its efficiency is reported, beside TRL's ``pack_dataset(strategy="bfd")``
  on the same conversation lengths (in the trainers' venv, ``benchmarks/trl_sft.py``).

    python -m benchmarks sft --conversations 20000 --rounds 5
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from benchmarks import common

TOKENIZER_DIR = common.ROOT / "benchmarks" / "results" / "sft-tokenizer"


def _conversations(n: int) -> list[dict]:
    from pipeline.chat import detect_format, read_conversation

    folder = common.shared_data("sft")
    records = json.loads((folder / "alpaca_en_demo.json").read_text())
    records += json.loads((folder / "glaive_toolcall_en_demo.json").read_text())
    conversations = [read_conversation(r, detect_format(r)) for r in records]
    return [conversations[i % len(conversations)] for i in range(n)]


def _template(name: str | None):
    from pipeline.chat.templates import CHATML, ChatTemplate, read_template

    if name is None:
        return ChatTemplate(CHATML)
    path = common.shared_data("chat_templates") / f"{name}.jinja"
    return ChatTemplate(read_template(str(path)), {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})


def sides(conversations: int, template: str | None, seq_len: int) -> dict:
    from pipeline.chat.masks import tokenize_conversations
    from pipeline.chat.packing import pack_conversations
    from pipeline.core.text_tokenizer import load_text_tokenizer

    tokenizer = load_text_tokenizer(str(TOKENIZER_DIR / "tokenizer.json"))
    chat_template = _template(template)
    data = _conversations(conversations)
    texts = [chat_template.render(c).text for c in data]

    def encode_batch():
        tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)

    def refinery():
        rendered = [chat_template.render(c) for c in data]
        return tokenize_conversations(rendered, data, tokenizer)

    def refinery_pack():
        tokenized = refinery()
        pack_conversations([t for t in tokenized if len(t.input_ids) <= seq_len], seq_len)

    return {"encode_batch": encode_batch, "refinery": refinery, "refinery_pack": refinery_pack}


def bench_sft(conversations: int, rounds: int, template: str | None, seq_len: int) -> dict:
    from pipeline.chat.masks import tokenize_conversations
    from pipeline.chat.packing import pack_conversations
    from pipeline.core.text_tokenizer import load_text_tokenizer

    with common.scratch() as tmp:
        corpus = common.sample_corpus(Path(tmp) / "corpus", 3000, 2, 5)
        common.refinery(
            "train-tokenizer", str(corpus), str(TOKENIZER_DIR / "tokenizer.json"), "--vocab-size", "8000",
            "--format", "tokenizer.json",
        )  # fmt: skip
    comparison = common.interleaved(
        "benchmarks.sft:sides",
        {"conversations": conversations, "template": template, "seq_len": seq_len},
        rounds,
        reference="encode_batch",
        candidates=["refinery", "refinery_pack"],
    )
    tokenizer = load_text_tokenizer(str(TOKENIZER_DIR / "tokenizer.json"))
    chat_template = _template(template)
    data = _conversations(conversations)
    started = time.perf_counter()
    tokenized = tokenize_conversations([chat_template.render(c) for c in data], data, tokenizer)
    fitting = [t for t in tokenized if len(t.input_ids) <= seq_len]
    packed = pack_conversations(fitting, seq_len)
    tokens = sum(len(t.input_ids) for t in tokenized)
    trained = sum(int(t.trained.sum()) for t in tokenized)
    return {
        "trl_bfd": _trl_bfd([len(t.input_ids) for t in fitting], seq_len),
        "conversations": conversations,
        "template": template or "chatml (built-in)",
        "tokens": tokens,
        "trained_tokens": trained,
        "vs_encode_batch": comparison,
        "pack": {
            "seq_len": seq_len,
            "over_long": len(tokenized) - len(fitting),
            "sequences": packed.table.num_rows,
            "efficiency": packed.efficiency,
        },
        "single_pass_seconds": time.perf_counter() - started,
    }


def _trl_bfd(lengths: list[int], seq_len: int) -> dict | None:
    """TRL's ``pack_dataset(strategy="bfd")`` on the same conversation lengths, in the
    trainers' venv (None where it is not built)."""
    python = common.ROOT / "benchmarks" / ".venv-trainers" / "bin" / "python"
    if not python.exists():
        return None
    with common.scratch() as tmp:
        cases, out = Path(tmp) / "lengths.json", Path(tmp) / "bfd.json"
        cases.write_text(json.dumps({"lengths": lengths, "seq_len": seq_len}))
        subprocess.run(
            [str(python), str(common.ROOT / "benchmarks" / "trl_sft.py"), "--bfd", str(cases), str(out)], check=True
        )
        return json.loads(out.read_text())


def main(argv: list[str]) -> None:
    parser = common.parser("sft", __doc__)
    parser.add_argument("--conversations", type=int, default=20000)
    parser.add_argument("--template", default=None, help="a ../shared/data/chat_templates name (default: ChatML)")
    parser.add_argument("--seq-len", type=int, default=2048)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    common.write_result("sft", argv, bench_sft(args.conversations, args.rounds, args.template, args.seq_len))
