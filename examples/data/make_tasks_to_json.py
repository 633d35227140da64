"""Writes tasks-to-json-{train,eval}.jsonl: instructions to turn a task description into JSON.

The rows are generated from small vocabularies with a fixed seed, so the set is reproducible:
``python examples/data/make_tasks_to_json.py``. Each row is Alpaca-style
{instruction, input, output}, where output is the JSON object the input describes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PROJECTS = [
    "ProjectA",
    "ProjectB",
    "Apollo",
    "Orion",
    "Atlas",
    "Falcon",
    "Nimbus",
    "Zephyr",
    "Beacon",
    "Harbor",
    "Quartz",
    "Summit",
    "Cobalt",
    "Meridian",
    "Lantern",
    "Vertex",
]
PRIORITIES = ["low", "medium", "high"]
OWNERS = ["Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia"]
TEMPLATES = [
    "Finish {name} by {deadline}, it is {priority} priority.",
    "{name} is due on {deadline} and has {priority} priority.",
    "Please schedule {name} with a deadline of {deadline}; priority {priority}.",
    "The {name} work must be done before {deadline}. Mark it {priority} priority.",
    "{owner} owns {name}, due {deadline}, priority {priority}.",
    "Assign {name} to {owner}. Deadline: {deadline}. Priority: {priority}.",
]
INSTRUCTIONS = [
    "Convert this instruction to JSON with the fields name, deadline and priority.",
    "Turn the task below into a JSON object.",
    "Extract the task as JSON.",
]


def make_row(rng: random.Random) -> dict[str, str]:
    fields = {
        "name": rng.choice(PROJECTS),
        "deadline": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "priority": rng.choice(PRIORITIES),
    }
    template = rng.choice(TEMPLATES)
    owner = rng.choice(OWNERS)
    if "{owner}" in template:
        fields["owner"] = owner
    return {
        "instruction": rng.choice(INSTRUCTIONS),
        "input": template.format(**{"owner": owner, **fields}),
        "output": json.dumps(fields),
    }


def main() -> None:
    rng = random.Random(0)
    here = Path(__file__).parent
    for split, count in (("train", 400), ("eval", 60)):
        rows = [make_row(rng) for _ in range(count)]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (here / f"tasks-to-json-{split}.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
