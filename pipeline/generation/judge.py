"""Rejection sampling with an LLM judge: ``candidates`` answers per prompt (each request its
own seed), each scored by a judge rubric that must return a parseable score (the default
is MT-Bench's single-answer grading prompt, Zheng et al. 2023, asking for ``Score: N``);
the best answer of a prompt is kept, or every answer at or above ``min_score``. Scores are
kept with the record (``generation.score``); every other candidate is a named reject. The
judgements go to ``judge.backend`` where one is set (``role="judge"``)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from pipeline.core import storage
from pipeline.generation.client import ChatRequest, ChatResponse
from pipeline.generation.config import JudgeConfig
from pipeline.generation.evol_instruct import response_problem
from pipeline.generation.prompts import PromptTemplate
from pipeline.generation.rounds import RoundResult, SeededMethod, SingleRoundMethod, load_instructions


def parse_score(text: str, pattern: re.Pattern[str], low: float, high: float) -> float | None:
    """The last score the judge wrote that matches ``pattern`` and lies in ``[low, high]``."""
    found = [float(m.group(1)) for m in pattern.finditer(text)]
    found = [v for v in found if low <= v <= high]
    return found[-1] if found else None


class JudgedSampling(SeededMethod, SingleRoundMethod):
    method = "judge"
    SEED_FIELD = "prompts"
    INSTANCES_REQUIRED = False
    TEMPLATE_VARIABLES = {"judge_template": {"instruction", "response"}}

    def __init__(
        self, config: JudgeConfig, sampling: dict[str, Any], seed: int, options: storage.StorageOptions | None
    ) -> None:
        self.config = config
        self.sampling = sampling
        self.seed = seed
        self.prompts = [
            (t.id, t.instruction + (f"\n\n{t.input}" if t.input else ""))
            for t in load_instructions(config.prompts, options)
        ]
        self.judge = PromptTemplate.load(config.judge_template, self.TEMPLATE_VARIABLES["judge_template"], options)
        self.pattern = re.compile(config.score_pattern)

    def templates(self) -> list[PromptTemplate]:
        return [self.judge]

    def max_requests(self) -> int:
        return len(self.prompts) * self.config.candidates * 2

    def budget_formula(self) -> str:
        return f"{len(self.prompts)} prompts x candidates {self.config.candidates} x 2 (answer, judgement)"

    def first_requests(self) -> list[ChatRequest]:
        return self._answer_requests(random.Random(f"{self.seed}:judge:1"))

    def _answer_requests(self, rng: random.Random) -> list[ChatRequest]:
        return [
            ChatRequest(
                ({"role": "user", "content": text},),
                self.sampling,
                seed=rng.randrange(2**31),
                context={"method": self.method, "step": "answer", "candidate": c},
            )
            for _, text in self.prompts
            for c in range(self.config.candidates)
        ]

    def round(self, round_number: int, send: Callable[..., list[ChatResponse]]) -> RoundResult:
        rng = random.Random(f"{self.seed}:judge:{round_number}")
        result = RoundResult()
        answers = send(self._answer_requests(rng))
        n = self.config.candidates
        judge_sampling = self.config.judge_sampling.request_fields()
        judged: list[tuple[int, int, str]] = []  # (prompt, candidate, answer)
        for i, answer in enumerate(answers):
            result.candidates += 1
            problem = f"request_{answer.error}" if answer.error else response_problem(answer.text or "")
            if problem:
                result.reject(problem)
            else:
                judged.append((i // n, i % n, answer.text.strip()))
        verdicts = send(
            [
                ChatRequest(
                    ({"role": "user", "content": self.judge.render(instruction=self.prompts[p][1], response=text)},),
                    judge_sampling,
                    seed=rng.randrange(2**31),
                    context={"method": self.method, "step": "judge", **self.judge.provenance()},
                )
                for p, _, text in judged
            ],
            role="judge",
        )
        scored: dict[int, list[tuple[float, int, str, int]]] = {}
        for (p, c, text), verdict in zip(judged, verdicts):
            score = None if verdict.error else parse_score(verdict.text or "", self.pattern, *self.config.score_range)
            if verdict.error:
                result.reject(f"request_{verdict.error}")
            elif score is None:
                result.reject("judge_score_unparseable")
            elif self.config.min_score is not None and score < self.config.min_score:
                result.reject("judge_score_below_min")
            else:
                scored.setdefault(p, []).append((score, c, text, answers[p * n + c].completion_tokens))
        for p, entries in sorted(scored.items()):
            entries.sort(key=lambda e: (-e[0], e[1]))  # the best score; the earlier candidate on a tie
            kept = entries[:1] if self.config.keep == "best" else entries
            for _ in entries[len(kept) :]:
                result.reject("judge_not_best")
            for score, c, text, tokens in kept:
                result.records.append(
                    {
                        "id": f"judge-{self.prompts[p][0]}-c{c}",
                        "instruction": self.prompts[p][1],
                        "messages": [
                            {"role": "user", "content": self.prompts[p][1]},
                            {"role": "assistant", "content": text},
                        ],
                        "parents": [self.prompts[p][0]],
                        "round": round_number,
                        "completion_tokens": tokens,
                        "score": score,
                    }
                )
        self.remember(result.records)
        return result
