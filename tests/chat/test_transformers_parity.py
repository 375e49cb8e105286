"""Against transformers itself (run in the trainers' venv, benchmarks/transformers_chat.py):
for templates with {% generation %} blocks, Refinery's rendering, token ids and loss mask
equal ``apply_chat_template(..., return_assistant_tokens_mask=True)`` token for token."""

import json
import os
import subprocess

import numpy as np
import pytest

from pipeline.chat import detect_format, message, read_conversation
from pipeline.chat.masks import tokenize_conversations
from pipeline.chat.templates import ChatTemplate, read_template, template_messages
from pipeline.core.text_tokenizer import load_text_tokenizer
from pipeline.tools.train_tokenizer import train_tokenizer
from tests.helpers import REPO, SHARED_DATA

TRAINERS_PYTHON = REPO / "benchmarks" / ".venv-trainers" / "bin" / "python"
SCRIPT = REPO / "benchmarks" / "transformers_chat.py"
SPECIAL = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}
# ChatML with its assistant turns in generation blocks, as transformers documents them
CHATML_GENERATION = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ message['content'] }}<|im_end|>\n{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer_file(sample_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "tokenizer.json"
    train_tokenizer(str(sample_corpus), str(out), vocab_size=3000, tokenizer_format="tokenizer.json")
    return out


def _conversations() -> list[dict]:
    conversations = [
        {
            "conversation_id": "a",
            "messages": [
                message("system", "Be brief."),
                message("user", "Hi — ça va?"),
                message("assistant", "Très bien, merci!"),
                message("user", "2+2?"),
                message("assistant", "4"),
            ],
            "tools": None,
        }
    ]
    folder = SHARED_DATA / "sft"
    if folder.is_dir():
        records = json.loads((folder / "alpaca_en_demo.json").read_text())[:20]
        conversations += [read_conversation(r, detect_format(r)) for r in records]
    return conversations


def _compare(tmp_path, tokenizer_file, template_text: str, conversations: list[dict]) -> None:
    if not TRAINERS_PYTHON.exists():
        pytest.fail(f"{TRAINERS_PYTHON} is missing: `make test` builds it (benchmarks/requirements-trainers.txt)")
    cases = {
        "tokenizer_file": str(tokenizer_file),
        "special_tokens": SPECIAL,
        "template": template_text,
        "conversations": [
            dict(zip(("messages", "tools"), template_messages(conversation))) for conversation in conversations
        ],
    }
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [str(TRAINERS_PYTHON), str(SCRIPT), str(tmp_path / "cases.json"), str(tmp_path / "out.json")],
        check=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},  # nothing downloaded
    )
    theirs = json.loads((tmp_path / "out.json").read_text())
    template = ChatTemplate(template_text, SPECIAL)
    rendered = [template.render(c) for c in conversations]
    ours = tokenize_conversations(rendered, conversations, load_text_tokenizer(str(tokenizer_file)))
    for mine, text, their in zip(ours, rendered, theirs):
        assert text.text == their["text"]
        assert mine.input_ids.tolist() == their["input_ids"]
        assert mine.trained.astype(int).tolist() == their["assistant_masks"]
        assert np.any(mine.trained)


def test_masks_equal_transformers_for_generation_blocks(tmp_path, tokenizer_file):
    _compare(tmp_path, tokenizer_file, CHATML_GENERATION, _conversations())


def test_phi4_masks_equal_transformers(tmp_path, tokenizer_file):
    path = SHARED_DATA / "chat_templates" / "phi_4.jinja"
    if not path.exists():
        pytest.skip(f"chat templates not found at {SHARED_DATA}")
    _compare(tmp_path, tokenizer_file, read_template(str(path)), _conversations())
