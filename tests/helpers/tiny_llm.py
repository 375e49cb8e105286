"""Builds a small Llama-architecture chat model offline, for a real OpenAI-compatible
server (``transformers serve``) in tests: a byte-level BPE ``tokenizer.json`` trained on the
given text with ChatML's special tokens and chat template, and weights (seeded).

Given prompt/answer pairs (tests/helpers/instruction_grammar.py), the weights are trained on
them briefly on the CPU (loss on the answers only), so that the model answers generation
requests in the formats the methods parse: the tests then cover kept records as well as the
parse-failure paths. Without pairs the weights stay random (enough for the transport tests).
Greedy decoding of fixed weights is deterministic, which the cache and resume tests need.
Runs in the trainers' venv (torch, transformers):

    python tests/helpers/tiny_llm.py TEXT_FILE OUT_DIR [PAIRS_JSON]
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(text_file: Path, out: Path, pairs_file: Path | None = None) -> None:
    pairs = json.loads(pairs_file.read_text()) if pairs_file else []
    lines = [line for line in text_file.read_text().splitlines() if line.strip()]
    lines += [line for pair in pairs for line in (pair["prompt"] + "\n" + pair["completion"]).splitlines()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(lines, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.token_to_id("<|im_end|>"),
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
    )
    model = LlamaForCausalLM(config)
    if pairs:
        train(model, fast, pairs)
    model.generation_config.do_sample = True  # a request with temperature > 0 samples (seeded by the request)
    model.save_pretrained(out)


def train(model, tokenizer, pairs: list[dict], steps: int = 500, batch: int = 16) -> None:
    torch.set_num_threads(2)
    examples = []
    for pair in pairs:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": pair["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(pair["completion"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        picked = torch.randint(len(examples), (batch,), generator=generator).tolist()
        width = max(len(examples[i][0]) for i in picked)
        ids = torch.full((batch, width), tokenizer.pad_token_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for row, i in enumerate(picked):
            tokens, targets = examples[i]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            labels[row, : len(targets)] = torch.tensor(targets)
            mask[row, : len(tokens)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()
    print(f"trained {steps} steps, last loss {loss.item():.3f}")


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
