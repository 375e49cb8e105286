"""Self-Instruct (Wang et al. 2023, "Self-Instruct: Aligning Language Models with
Self-Generated Instructions", ACL): from seed tasks, a round asks the model to continue a
numbered list of tasks whose examples are drawn from the seeds and from earlier generations
(6 and 2 of 8 in the paper); new instructions are dropped when too short or long, when they
mention what a language model cannot use (images, files, plots), when they start with
punctuation or a non-ASCII character, or when their ROUGE-L against the pool exceeds 0.7;
each kept instruction then gets an input and output from a second request. Rounds repeat
until the target count or the round limit.

Everything random comes from ``random.Random`` seeded by the job seed and the round, and
requests carry seeds derived the same way, so a re-run with a deterministic server produces
the same records."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from typing import Any

from pipeline.core import storage
from pipeline.generation.client import ChatRequest, ChatResponse
from pipeline.generation.config import SelfInstructConfig
from pipeline.generation.prompts import PromptTemplate
from pipeline.generation.rouge import SimilarityPool
from pipeline.generation.rounds import RoundResult, SeededMethod, load_instructions

REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|as an ai\b|i cannot|i can'?t (help|assist|do)|i am unable|i'?m unable)",
    re.IGNORECASE,
)
_TASK_SPLIT = re.compile(r"(?:^|\n)\s*(?:Task\s*\d+\s*[:.]|\d+\s*[.)]\s)", re.IGNORECASE)
_INPUT = re.compile(r"(?:^|\n)\s*Input\s*:", re.IGNORECASE)
_OUTPUT = re.compile(r"(?:^|\n)\s*Output\s*:", re.IGNORECASE)
_NEXT_EXAMPLE = re.compile(r"\n\s*(?:Task|Input|Example)\s*\d*\s*:", re.IGNORECASE)

TASKS_VARIABLES = {"examples"}
INSTANCE_VARIABLES = {"instruction", "examples"}


def split_tasks(text: str, cut_short: bool) -> list[str]:
    """Instructions from a continued task list: the text up to the first ``Task N:`` is the
    next task; a last piece cut off by ``max_tokens`` is dropped (as the paper does)."""
    pieces = [re.sub(r"\s+", " ", p).strip() for p in _TASK_SPLIT.split(text)]
    if cut_short and len(pieces) > 1:
        pieces = pieces[:-1]
    elif cut_short:
        pieces = []
    return [p for p in pieces if p]


def instruction_problem(text: str, config: SelfInstructConfig) -> str | None:
    """The reject reason of a candidate instruction before the similarity check, or None."""
    words = text.split()
    if len(words) < config.min_words:
        return "too_short"
    if len(words) > config.max_words:
        return "too_long"
    lowered = text.lower()
    if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in config.unusable_words):
        return "unusable_modality"
    if text[0] in string.punctuation:
        return "starts_with_punctuation"
    if not text[0].isascii():
        return "starts_non_ascii"
    return None


def parse_instance(text: str) -> tuple[str, str] | str:
    """``(input, output)`` from an instance response, or a reject reason."""
    if not text.strip():
        return "empty_output"
    outputs = list(_OUTPUT.finditer(text))
    if not outputs:
        return "no_output_field"
    output_start = outputs[0]
    inputs = [m for m in _INPUT.finditer(text) if m.start() < output_start.start()]
    input_text = text[inputs[0].end() : output_start.start()].strip() if inputs else ""
    rest = text[output_start.end() :]
    following = _NEXT_EXAMPLE.search(rest)
    output = (rest[: following.start()] if following else rest).strip()
    if not output:
        return "empty_output"
    if len(output.split()) < 30 and REFUSAL.search(output):
        return "refused"
    return input_text, output


class SelfInstruct(SeededMethod):
    """One method instance per job; ``round`` runs one round against ``send``."""

    method = "self_instruct"
    SEED_FIELD = "seed_tasks"
    INSTANCES_REQUIRED = True
    TEMPLATE_VARIABLES = {"tasks_template": TASKS_VARIABLES, "instance_template": INSTANCE_VARIABLES}

    def __init__(
        self,
        config: SelfInstructConfig,
        sampling: dict[str, Any],
        seed: int,
        options: storage.StorageOptions | None = None,
    ) -> None:
        self.config = config
        self.sampling = sampling
        self.seed = seed
        self.seeds = load_instructions(config.seed_tasks, options, instances_required=True)
        self.tasks_template = PromptTemplate.load(config.tasks_template, TASKS_VARIABLES, options)
        self.instance_template = PromptTemplate.load(config.instance_template, INSTANCE_VARIABLES, options)
        self.pool = SimilarityPool([t.instruction for t in self.seeds])
        self.machine: list[dict[str, Any]] = []

    def templates(self) -> list[PromptTemplate]:
        return [self.tasks_template, self.instance_template]

    def max_requests(self) -> int:
        """At most: every round's task-list requests, and one request per kept instruction."""
        return self.config.max_rounds * self.config.requests_per_round + self.config.target

    def budget_formula(self) -> str:
        c = self.config
        return f"max_rounds {c.max_rounds} x requests_per_round {c.requests_per_round} + target {c.target}"

    def max_rounds(self) -> int:
        return self.config.max_rounds

    def first_requests(self) -> list[ChatRequest]:
        return self.task_requests(1)[0]

    def shortfall(self) -> str | None:
        if len(self.machine) >= self.config.target:
            return None
        return (
            f"{len(self.machine)} of the {self.config.target} records wanted after {self.config.max_rounds} rounds "
            "(generate.self_instruct.max_rounds)"
        )

    def remember(self, records: list[dict[str, Any]]) -> None:
        """Adds a committed round's records to the pool (on resume, rounds already done)."""
        for record in records:
            self.pool.add(record["instruction"])
            self.machine.append(record)

    def done(self) -> bool:
        return len(self.machine) >= self.config.target

    def _request(self, prompt: str, seed: int, context: dict[str, Any]) -> ChatRequest:
        return ChatRequest(({"role": "user", "content": prompt},), self.sampling, seed=seed, context=context)

    def task_requests(self, round_number: int) -> tuple[list[ChatRequest], list[list[str]]]:
        """The round's task-list requests and, for each, the ids of its in-context examples."""
        rng = random.Random(f"{self.seed}:self_instruct:{round_number}")
        requests, parents = [], []
        machine_n = min(self.config.machine_examples, len(self.machine))
        seed_n = min(self.config.examples_per_prompt - machine_n, len(self.seeds))
        for _ in range(self.config.requests_per_round):
            examples = [(t.id, t.instruction) for t in rng.sample(self.seeds, seed_n)]
            examples += [(r["id"], r["instruction"]) for r in rng.sample(self.machine, machine_n)]
            rng.shuffle(examples)
            prompt = self.tasks_template.render(examples=[text for _, text in examples])
            context = {
                "method": self.method,
                "step": "tasks",
                "round": round_number,
                **self.tasks_template.provenance(),
            }
            requests.append(self._request(prompt, rng.randrange(2**31), context))
            parents.append([task_id for task_id, _ in examples])
        return requests, parents

    def keep_instructions(
        self, responses: list[ChatResponse], parents: list[list[str]], result: RoundResult
    ) -> list[tuple[str, list[str]]]:
        kept: list[tuple[str, list[str]]] = []
        this_round = SimilarityPool()
        wanted = self.config.target - len(self.machine)
        for response, example_ids in zip(responses, parents):
            if response.error:
                result.reject(f"request_{response.error}")
                continue
            candidates = split_tasks(response.text or "", response.finish_reason == "length")
            if not candidates:
                result.reject("no_task_in_output")
            for text in candidates:
                result.candidates += 1
                text = text[:1].upper() + text[1:]
                problem = instruction_problem(text, self.config)
                if problem is None:
                    similarity = max(self.pool.most_similar(text), this_round.most_similar(text))
                    problem = "similar_to_pool" if similarity > self.config.max_similarity else None
                if problem is None and len(kept) >= wanted:
                    problem = "over_target"
                if problem:
                    result.reject(problem)
                    continue
                this_round.add(text)
                kept.append((text, example_ids))
        return kept

    def instance_requests(self, round_number: int, instructions: list[tuple[str, list[str]]]) -> list[ChatRequest]:
        rng = random.Random(f"{self.seed}:self_instruct_instances:{round_number}")
        requests = []
        for text, _ in instructions:
            shown = rng.sample(self.seeds, min(self.config.instance_examples, len(self.seeds)))
            examples = [{"instruction": t.instruction, "input": t.input, "output": t.output} for t in shown]
            prompt = self.instance_template.render(instruction=text, examples=examples)
            context = {
                "method": self.method,
                "step": "instance",
                "round": round_number,
                **self.instance_template.provenance(),
            }
            requests.append(self._request(prompt, rng.randrange(2**31), context))
        return requests

    def round(self, round_number: int, send: Callable[[list[ChatRequest]], list[ChatResponse]]) -> RoundResult:
        result = RoundResult()
        requests, parents = self.task_requests(round_number)
        instructions = self.keep_instructions(send(requests), parents, result)
        if not instructions:
            return result
        for index, ((text, example_ids), response) in enumerate(
            zip(instructions, send(self.instance_requests(round_number, instructions)))
        ):
            parsed = parse_instance(response.text or "") if not response.error else f"request_{response.error}"
            if isinstance(parsed, str):
                result.reject(parsed)
                continue
            input_text, output = parsed
            prompt = text + (f"\n\n{input_text}" if input_text else "")
            result.records.append(
                {
                    "id": f"self_instruct-r{round_number:03d}-{index:05d}",
                    "instruction": text,
                    "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}],
                    "parents": example_ids,
                    "round": round_number,
                    "completion_tokens": response.completion_tokens,
                }
            )
        self.remember(result.records)
        return result
