"""A small generic English corpus, generated procedurally so the tiny base model needs no download.

It teaches the tokenizer and the tiny model ordinary words (including everyday body and health
words) but never pairs symptoms with a diagnosis: that is what the federated task must learn.
"""

import random

_SUBJECTS = (
    "the doctor",
    "a nurse",
    "my neighbour",
    "the teacher",
    "a farmer",
    "the child",
    "my sister",
    "the old man",
    "a student",
    "the driver",
    "our friend",
    "the patient",
    "a visitor",
    "the cook",
)
_VERBS = (
    "walked to",
    "looked at",
    "talked about",
    "cleaned",
    "visited",
    "painted",
    "found",
    "carried",
    "remembered",
    "opened",
    "closed",
    "watched",
    "described",
    "asked about",
)
_OBJECTS = (
    "the market",
    "a small house",
    "the river",
    "the garden",
    "a red door",
    "the hospital",
    "the kitchen",
    "a long road",
    "the school",
    "an old book",
    "the window",
    "a warm coat",
    "the morning train",
    "a cup of tea",
    "the clinic",
    "the weather",
    "a quiet room",
)
_TIMES = (
    "yesterday",
    "today",
    "this morning",
    "last night",
    "on monday",
    "after lunch",
    "before dinner",
    "every day",
    "in the evening",
    "since friday",
    "for two days",
)
_FEELINGS = (
    "tired",
    "happy",
    "cold",
    "warm",
    "hungry",
    "sleepy",
    "busy",
    "calm",
    "sore",
    "thirsty",
    "dizzy",
    "itchy",
    "weak",
    "fine",
    "better",
    "worse",
)
_BODY = (
    "head",
    "back",
    "stomach",
    "throat",
    "nose",
    "eyes",
    "skin",
    "chest",
    "ankle",
    "knee",
    "arm",
    "leg",
    "ear",
    "neck",
    "foot",
    "hand",
)
_TEMPLATES = (
    "{s} {v} {o} {t}.",
    "{t} {s} {v} {o}.",
    "i felt {f} {t}, so {s} {v} {o}.",
    "my {b} was {f} {t}.",
    "{s} said the {b} felt {f}.",
    "did {s} feel {f} {t}?",
    "{s} {v} {o} and felt {f}.",
    "q: how is your {b}?\na: it feels {f} {t}.",
)


def generic_corpus(n_sentences: int = 3000, seed: int = 1234) -> list[str]:
    """Return `n_sentences` lower-case sentences; the same arguments always give the same list."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences):
        template = rng.choice(_TEMPLATES)
        lines.append(
            template.format(
                s=rng.choice(_SUBJECTS),
                v=rng.choice(_VERBS),
                o=rng.choice(_OBJECTS),
                t=rng.choice(_TIMES),
                f=rng.choice(_FEELINGS),
                b=rng.choice(_BODY),
            )
        )
    return lines
