"""Evol-Instruct (Xu et al. 2024, "WizardLM: Empowering Large Pre-Trained Language Models to
Follow Complex Instructions", ICLR): each round rewrites every instruction of the pool with
one evolution, chosen at random (seeded): in depth (add constraints, deepen, concretize,
increase reasoning steps, complicate the input) or in breadth (a new, rarer prompt of the same
domain), with the paper's prompts. The elimination rules of its section 3.3 then drop an
evolution whose instruction (1) the model judges equal to the original (no information
gain), or whose response (2) is a short refusal (has "sorry" and fewer than 80 words) or
(3) only punctuation and stop words, or whose instruction (4) copies the prompt's wording
("given prompt", "#Rewritten Prompt#"). A survivor is answered and becomes a record; its
instruction joins the next round's pool, and a failed one's original goes back instead.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from pipeline.core import storage
from pipeline.generation.client import ChatRequest, ChatResponse
from pipeline.generation.config import EvolInstructConfig
from pipeline.generation.prompts import PromptTemplate
from pipeline.generation.rounds import RoundResult, SeededMethod, load_instructions

# The paper's in-depth methods (its Appendix prompts), by the names the spec uses.
DEPTH_METHODS = {
    "add_constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "increase_reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it to explicitly request multiple-step reasoning.",
    "complicate_input": "Please add one more input (such as a table, a piece of code or a list of data) that the prompt must use, written out in full.",
}
TEMPLATE_WORDING = re.compile(
    r"#?\s*(the\s+)?(given|rewritten|created)\s+prompt\s*#?|#rewritten prompt#|#created prompt#", re.IGNORECASE
)
STOP_WORDS = frozenset(
    "a an the and or but if of to in on at by for with about as is are was were be been it this that these those "
    "i you he she we they me him her us them my your our their not no yes so do does did".split()
)
_WORD = re.compile(r"[A-Za-z0-9]+")


def copies_template(text: str) -> bool:
    return bool(TEMPLATE_WORDING.search(text))


def judged_equal(text: str) -> bool | None:
    """The equality judge's verdict: True (Equal), False (Not Equal), None (neither)."""
    lowered = text.lower()
    if "not equal" in lowered:
        return False
    if "equal" in lowered:
        return True
    return None


def response_problem(text: str) -> str | None:
    words = _WORD.findall(text)
    if not text.strip():
        return "empty_output"
    if "sorry" in text.lower() and len(words) < 80:
        return "refused"
    if all(w.lower() in STOP_WORDS for w in words):
        return "only_stop_words"
    return None


class EvolInstruct(SeededMethod):
    method = "evol_instruct"
    SEED_FIELD = "seed_instructions"
    INSTANCES_REQUIRED = False
    TEMPLATE_VARIABLES = {
        "depth_template": {"instruction", "method"},
        "breadth_template": {"instruction"},
        "equal_template": {"first", "second"},
    }

    def __init__(
        self, config: EvolInstructConfig, sampling: dict[str, Any], seed: int, options: storage.StorageOptions | None
    ) -> None:
        self.config = config
        self.sampling = sampling
        self.seed = seed
        seeds = load_instructions(config.seed_instructions, options)
        if config.max_seed_instructions is not None:
            seeds = seeds[: config.max_seed_instructions]
        self.pool: list[tuple[str, str]] = [
            (t.id, t.instruction + (f"\n\n{t.input}" if t.input else "")) for t in seeds
        ]
        self.depth = PromptTemplate.load(config.depth_template, self.TEMPLATE_VARIABLES["depth_template"], options)
        self.breadth = PromptTemplate.load(
            config.breadth_template, self.TEMPLATE_VARIABLES["breadth_template"], options
        )
        self.equal = PromptTemplate.load(config.equal_template, self.TEMPLATE_VARIABLES["equal_template"], options)
        self.rounds_done = 0

    def templates(self) -> list[PromptTemplate]:
        return [self.depth, self.breadth, self.equal]

    def max_requests(self) -> int:
        """Every instruction of the pool, every round: an evolution, a judgement, an answer."""
        return self.config.rounds * len(self.pool) * 3

    def budget_formula(self) -> str:
        return f"rounds {self.config.rounds} x {len(self.pool)} seed instructions x 3 requests"

    def max_rounds(self) -> int:
        return self.config.rounds

    def first_requests(self) -> list[ChatRequest]:
        rng = random.Random(f"{self.seed}:evol_instruct:1")
        return [
            self._request(
                self.depth.render(instruction=text, method=DEPTH_METHODS["deepen"]),
                rng.randrange(2**31),
                "deepen",
                1,
                self.depth,
            )
            for _, text in self.pool
        ]

    def shortfall(self) -> str | None:
        return None

    def done(self) -> bool:
        return self.rounds_done >= self.config.rounds

    def remember(self, records: list[dict[str, Any]], round_number: int | None = None) -> None:
        """A committed round: its evolved instructions replace their parents in the pool."""
        evolved = {r["parents"][0]: (r["id"], r["instruction"]) for r in records}
        self.pool = [evolved.get(task_id, (task_id, text)) for task_id, text in self.pool]
        self.rounds_done += 1

    def _request(self, prompt: str, seed: int, step: str, round_number: int, template: PromptTemplate) -> ChatRequest:
        context = {"method": self.method, "step": step, "round": round_number, **template.provenance()}
        return ChatRequest(({"role": "user", "content": prompt},), self.sampling, seed=seed, context=context)

    def round(self, round_number: int, send: Callable[[list[ChatRequest]], list[ChatResponse]]) -> RoundResult:
        rng = random.Random(f"{self.seed}:evol_instruct:{round_number}")
        result = RoundResult()
        operations = list(self.config.operations)
        evolve = []
        chosen = []
        for _, text in self.pool:
            operation = rng.choice(operations)
            chosen.append(operation)
            if operation == "breadth":
                evolve.append(
                    self._request(
                        self.breadth.render(instruction=text),
                        rng.randrange(2**31),
                        "breadth",
                        round_number,
                        self.breadth,
                    )
                )
            else:
                prompt = self.depth.render(instruction=text, method=DEPTH_METHODS[operation])
                evolve.append(self._request(prompt, rng.randrange(2**31), operation, round_number, self.depth))
        candidates: list[tuple[int, str]] = []
        for index, response in enumerate(send(evolve)):
            result.candidates += 1
            evolved = (response.text or "").strip()
            if response.error:
                result.reject(f"request_{response.error}")
            elif not evolved:
                result.reject("empty_output")
            elif copies_template(evolved):
                result.reject("copies_template_wording")
            elif evolved == self.pool[index][1]:
                result.reject("no_information_gain")
            else:
                candidates.append((index, evolved))
        if self.config.equality_check and candidates:
            judged = send(
                [
                    self._request(
                        self.equal.render(first=self.pool[i][1], second=text),
                        rng.randrange(2**31),
                        "equal",
                        round_number,
                        self.equal,
                    )
                    for i, text in candidates
                ]
            )
            kept = []
            for (index, text), verdict in zip(candidates, judged):
                equal = judged_equal(verdict.text or "") if not verdict.error else None
                if verdict.error:
                    result.reject(f"request_{verdict.error}")
                elif equal is None:
                    result.reject("unparseable_judgement")
                elif equal:
                    result.reject("no_information_gain")
                else:
                    kept.append((index, text))
            candidates = kept
        answers = send(
            [
                ChatRequest(
                    ({"role": "user", "content": text},),
                    self.sampling,
                    seed=rng.randrange(2**31),
                    context={"method": self.method, "step": "answer", "round": round_number},
                )
                for _, text in candidates
            ]
        )
        for (index, text), answer in zip(candidates, answers):
            problem = f"request_{answer.error}" if answer.error else response_problem(answer.text or "")
            if problem:
                result.reject(problem)
                continue
            result.records.append(
                {
                    "id": f"evol_instruct-r{round_number:03d}-{index:05d}",
                    "instruction": text,
                    "messages": [
                        {"role": "user", "content": text},
                        {"role": "assistant", "content": answer.text.strip()},
                    ],
                    "parents": [self.pool[index][0]],
                    "round": round_number,
                    "completion_tokens": answer.completion_tokens,
                    "operation": chosen[index],
                }
            )
        self.remember(result.records)
        return result
