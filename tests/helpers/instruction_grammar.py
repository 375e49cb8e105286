"""A small grammar of instructions, for generation tests: seed tasks in Self-Instruct's
format, and the prompt/answer pairs the test model (tests/helpers/tiny_llm.py) is trained
on, rendered with Refinery's own built-in prompt templates, so that the model's answers
follow the formats the methods parse.

The model learns to write a new instruction about the topic of the *last* example of a task
list (examples are drawn and shuffled per request, so different prompts get different
instructions), to answer an instruction with an input and an output about its topic, and,
for Evol-Instruct, to rewrite an instruction about the same topic with an added demand (in
depth) or about another topic (in breadth), to judge two instructions Equal or Not Equal,
and to answer an instruction; as a judge, to write ``Score: N``; and, given a document of
the corpus (the sample corpus the tests generate from), to write ``Question:``/``Answer:``
pairs about it (what kind of text it is: the model learns the format, not the facts).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

VERBS = ["Write", "Describe", "Summarize", "Explain", "List", "Suggest", "Compare", "Outline"]
ADJECTIVES = ["short", "simple", "clear", "detailed", "friendly", "careful"]
NOUNS = ["story", "poem", "summary", "explanation", "plan", "letter", "guide", "review"]
TOPICS = [
    "rivers", "winter", "cooking", "trains", "gardens", "music", "bridges", "forests", "markets", "islands",
    "bicycles", "libraries", "volcanoes", "harbors", "deserts", "orchards", "castles", "glaciers", "bakeries",
    "lighthouses", "museums", "meadows", "canals", "festivals", "telescopes", "vineyards", "tunnels", "beaches",
]  # fmt: skip


def instruction(rng: random.Random, topic: str) -> str:
    return f"{rng.choice(VERBS)} a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} about {topic}."


EXTRAS = [
    "give two examples",
    "use three steps",
    "name one risk",
    "keep it under fifty words",
    "add a table",
    "explain each step",
]


def topic_of(text: str) -> str:
    return text.split(" about ", 1)[-1].split(" ")[0].rstrip(".")


def answer(rng: random.Random, topic: str) -> str:
    return f"Here is a {rng.choice(ADJECTIVES)} answer about {topic}: {topic} matter to many people."


def instance(rng: random.Random, topic: str) -> tuple[str, str]:
    if rng.random() < 0.5:
        return "", f"Here is a {rng.choice(ADJECTIVES)} answer about {topic}: {topic} matter to many people."
    return f"The reader likes {topic}.", f"A {rng.choice(NOUNS)} about {topic} for a reader who likes {topic}."


def seed_tasks(n: int = 24, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i, topic in enumerate(rng.sample(TOPICS, n)):
        text = instruction(rng, topic)
        input_text, output = instance(rng, topic)
        tasks.append(
            {
                "id": f"seed_task_{i}",
                "name": f"task_{i}",
                "instruction": text,
                "instances": [{"input": input_text, "output": output}],
                "is_classification": False,
            }
        )
    return tasks


def write_seed_tasks(path: Path, n: int = 24, seed: int = 0) -> Path:
    path.write_text("".join(json.dumps(t) + "\n" for t in seed_tasks(n, seed)))
    return path


def training_pairs(n: int = 4200, seed: int = 1, documents: list[str] = (), qa: int = 600) -> list[dict]:
    """``{"prompt", "completion"}`` pairs in the shape of Self-Instruct's two requests,
    Evol-Instruct's four and the judge's; and, given ``documents``, ``qa`` pairs in the shape
    of document-grounded question-answer requests (``builtin:documents_qa_pairs``)."""
    from pipeline.generation.evol_instruct import DEPTH_METHODS, EvolInstruct
    from pipeline.generation.prompts import PromptTemplate
    from pipeline.generation.self_instruct import INSTANCE_VARIABLES, TASKS_VARIABLES

    tasks_template = PromptTemplate.load("builtin:self_instruct_tasks", TASKS_VARIABLES)
    instance_template = PromptTemplate.load("builtin:self_instruct_instance", INSTANCE_VARIABLES)
    evol = {
        name: PromptTemplate.load(f"builtin:evol_instruct_{name}", EvolInstruct.TEMPLATE_VARIABLES[f"{name}_template"])
        for name in ("depth", "breadth", "equal")
    }
    judge = PromptTemplate.load("builtin:judge_score", {"instruction", "response"})
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        kind = i % 7
        if kind == 6:
            topic = rng.choice(TOPICS)
            prompt = judge.render(instruction=instruction(rng, topic), response=answer(rng, rng.choice(TOPICS)))
            pairs.append(
                {"prompt": prompt, "completion": f"The answer is {rng.choice(ADJECTIVES)}. Score: {rng.randint(1, 10)}"}
            )
        elif kind >= 2:
            topic = rng.choice(TOPICS)
            given = instruction(rng, topic)
            if rng.random() < 0.3:
                given = given.rstrip(".") + f" and {rng.choice(EXTRAS)}."
            if kind == 2:
                prompt = evol["depth"].render(instruction=given, method=rng.choice(list(DEPTH_METHODS.values())))
                completion = instruction(rng, topic).rstrip(".") + f" and {rng.choice(EXTRAS)}."
            elif kind == 3:
                prompt = evol["breadth"].render(instruction=given)
                completion = instruction(rng, rng.choice(TOPICS))
            elif kind == 4:
                same = rng.random() < 0.2
                other = given if same else instruction(rng, topic).rstrip(".") + f" and {rng.choice(EXTRAS)}."
                prompt = evol["equal"].render(first=given, second=other)
                completion = "Equal" if same else "Not Equal"
            else:
                prompt, completion = given, answer(rng, topic)
            pairs.append({"prompt": prompt, "completion": completion})
        elif kind == 0:
            examples = [instruction(rng, rng.choice(TOPICS)) for _ in range(rng.randint(4, 8))]
            topic = topic_of(examples[-1])
            first, second = instruction(rng, topic), instruction(rng, topic)
            completion = f"{first}\nTask {len(examples) + 2}: {second}"
            pairs.append({"prompt": tasks_template.render(examples=examples), "completion": completion})
        else:
            topic = rng.choice(TOPICS)
            shown = []
            for _ in range(rng.randint(0, 3)):
                other = rng.choice(TOPICS)
                input_text, output = instance(rng, other)
                shown.append({"instruction": instruction(rng, other), "input": input_text, "output": output})
            input_text, output = instance(rng, topic)
            completion = (f"Input: {input_text}\n" if input_text else "") + f"Output: {output}"
            prompt = instance_template.render(instruction=instruction(rng, topic), examples=shown)
            pairs.append({"prompt": prompt, "completion": completion})
    return pairs + document_qa_pairs(documents, qa, seed)


QA = [
    ("What is the text?", "The text is {kind}."),
    ("What does the document show?", "It shows {kind}."),
    ("What kind of text is this?", "This is {kind}."),
]
QA_MAX_CHARS = 300
"""Documents are cut to this many characters in the prompts the model learns (a job that wants
the learnt answers sets ``documents.max_chars`` to it)."""


def document_qa_pairs(documents: list[str], n: int, seed: int) -> list[dict]:
    from pipeline.generation.grounded import cut
    from pipeline.generation.prompts import PromptTemplate

    texts = [t for t in documents if t and len(t.split()) >= 4]
    if not texts:
        return []
    template = PromptTemplate.load("builtin:documents_qa_pairs", {"document"})
    rng = random.Random(f"{seed}:qa")
    pairs = []
    for _ in range(n):
        text = rng.choice(texts)
        starts = [0] + [m.end() for m in re.finditer(r"\s+", text[: max(0, len(text) - 80)])]
        document = cut(text[rng.choice(starts) if rng.random() < 0.5 else 0 :], QA_MAX_CHARS)
        kind = "a Python function" if "def " in document else "an example" if ">>>" in document else "a passage"
        lines = [f"Question: {q}\nAnswer: {a.format(kind=kind)}" for q, a in rng.sample(QA, rng.randint(1, 2))]
        pairs.append({"prompt": template.render(document=document), "completion": "\n".join(lines)})
    return pairs
