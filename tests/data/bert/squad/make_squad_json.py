"""Writes the small SQuAD 1.1 and 2.0 files of this folder (run once; the JSON files are kept).

    python tests/data/bert/squad/make_squad_json.py

Real text in SQuAD's layout: a passage of "A Scandal in Bohemia" (Conan Doyle, 1891; public domain,
from the bundled ``src/bertdetr/data/pd_books.txt``) long enough to need several doc-stride
windows at Google's defaults, and short paragraphs written for these tests with what SQuAD's text
has: accents, a CJK character, numbers in parentheses, an answer inside a longer word ("Japan" in
"Japanese", Google's own example), U+202F (Google's extra whitespace) and a no-break space (not
whitespace for Google's splitting, whitespace for its tokenizer), tabs, newlines, double spaces.

Answer offsets are found in the text (``occurrence``-th match), except for the answers that are
meant not to be found: their text differs from the context at their offset (as SQuAD's few
"weird Unicode" answers do), and Google's reader skips them in training.

Files: ``train-v1.1.json`` (one answer per question, two of them not findable), ``dev-v1.1.json``
(up to three answers per question, as SQuAD's dev set), ``train-v2.0.json`` and ``dev-v2.0.json``
(the same plus unanswerable questions, ``is_impossible`` with ``plausible_answers``).
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
BOOKS = os.path.join(HERE, "..", "..", "..", "..", "src", "bertdetr", "data", "pd_books.txt")


def holmes() -> str:
    with open(BOOKS, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = lines.index("To Sherlock Holmes she is always the woman.")
    return " ".join(lines[start:start + 25])


CURIE = (
    "Marie Skłodowska-Curie (born Maria Salomea Skłodowska; 7 November 1867 – 4 July 1934) was a Polish "
    "and naturalised-French physicist and chemist who did pioneering research on radioactivity. She was "
    "the first woman to win a Nobel Prize, the first person to win it twice, and the only person to win "
    "it in two scientific fields. Her husband, Pierre Curie, shared her first Nobel Prize in 1903. She "
    "was born in Warsaw, then in the Kingdom of Poland, and studied at the clandestine Flying University "
    "before she followed her elder sister Bronisława to Paris in 1891."
)

ELECTRONICS = (
    "The leader was John Smith (1895-1943). The Japanese electronics industry is the largest in the world; "
    "its companies export televisions, cameras and game consoles to more than 150 countries.  In 2019 "
    "the industry's revenue reached ¥11.2 trillion (about US$103 billion), and Smith's old firm, "
    "Nippon Denki, was still among the ten biggest."
)

TEA = (
    "Tea  culture in China\u202fgoes back thousands of years.\nThe Chinese word for tea, 茶 (chá), spread "
    "along trade routes: coastal Min dialects said tê, which became \"tea\" in English, while overland "
    "routes carried chá to Persian and Russian.\tToday\u00a0Yunnan province grows most Pu'er tea, "
    "which is pressed into cakes and aged for up to 50 years."
)

# (context, [(id, question, [(answer, occurrence)], impossible, plausible)])
# Train files take the first answer; dev files all of them.
ARTICLES = [
    ("A_Scandal_in_Bohemia", holmes(), [
        ("holmes-1", "What does Sherlock Holmes always call Irene Adler?", [("the woman", 0), ("the woman.", 0)]),
        ("holmes-2", "In which street were the lodgings where Holmes remained?",
         [("Baker Street", 0), ("in Baker Street", 0)]),
        ("holmes-3", "What did Holmes alternate between from week to week?",
         [("cocaine and ambition", 0), ("between cocaine and ambition", 0), ("cocaine", 0)]),
        ("holmes-4", "Where was Holmes summoned in the case of the Trepoff murder?", [("Odessa", 0)]),
        ("holmes-5", "On what date was the narrator returning from a journey to a patient?",
         [("the twentieth of March, 1888", 0), ("twentieth of March, 1888", 0), ("March, 1888", 0)]),
        ("holmes-6", "Where did the singular tragedy of the Atkinson brothers happen?", [("Trincomalee", 0)]),
        ("holmes-7", "For the reigning family of which country did Holmes accomplish a mission delicately and "
                     "successfully, according to the account that the narrator heard from time to time?",
         [("Holland", 0)]),
        ("holmes-8", "What was Holmes hot upon the scent of?", [("some new problem", 0), ("new problem", 0)]),
        ("holmes-9", "What did the narrator see pass twice against the blind?",
         [("his tall, spare figure", 0), ("tall, spare figure", 0)]),
    ], [
        ("holmes-x1", "What was the name of Holmes's wife?", [("Irene Adler", 0)]),
        ("holmes-x2", "In which year did the narrator marry?", [("1888", 0)]),
    ]),
    ("Marie_Curie", CURIE, [
        ("curie-1", "In what year was Marie Curie born?", [("1867", 0), ("7 November 1867", 0)]),
        ("curie-2", "Who shared her first Nobel Prize?", [("Pierre Curie", 0), ("Her husband, Pierre Curie", 0)]),
        ("curie-3", "In which city was she born?", [("Warsaw", 0)]),
        ("curie-4", "What did she do pioneering research on?", [("radioactivity", 0), ("radioactivity.", 0)]),
        ("curie-5", "Which sister did she follow to Paris?", [("Bronisława", 0), ("her elder sister Bronisława", 0)]),
    ], [
        ("curie-x1", "In what year did Marie Curie win her third Nobel Prize?", [("1903", 0)]),
        ("curie-x2", "Where was Pierre Curie born?", [("Warsaw", 0)]),
    ]),
    ("Electronics", ELECTRONICS, [
        ("elec-1", "What year was John Smith born?", [("1895", 0)]),
        ("elec-2", "What country is the top exporter of electronics?", [("Japan", 0), ("Japanese", 0)]),
        ("elec-3", "To how many countries do the companies export?", [("more than 150", 0), ("150", 0)]),
        ("elec-4", "How much revenue did the industry have in 2019?",
         [("¥11.2 trillion", 0), ("¥11.2 trillion (about US$103 billion)", 0), ("US$103 billion", 0)]),
        ("elec-5", "What was the name of Smith's old firm?", [("Nippon Denki", 0)]),
    ], [
        ("elec-x1", "What year did John Smith found Nippon Denki?", [("1895", 0)]),
    ]),
    ("Tea", TEA, [
        ("tea-1", "What is the Chinese character for tea?", [("茶", 0), ("茶 (chá)", 0)]),
        ("tea-2", "What did coastal Min dialects say for tea?", [("tê", 0)]),
        ("tea-3", "Which province grows most Pu'er tea?", [("Yunnan", 0), ("Yunnan province", 0)]),
        ("tea-4", "For how long can Pu'er cakes be aged?", [("up to 50 years", 0), ("50 years", 0)]),
        ("tea-5", "Where does tea culture go back thousands of years?", [("China", 0)]),
    ], [
        ("tea-x1", "What did overland routes carry chá to besides Persian and Japanese?", [("Russian", 0)]),
    ]),
]

# Training answers that Google cannot find at their offset: (id, question, wrong text, offset of).
NOT_FOUND = [
    ("Marie_Curie", "curie-nf1", "What is her name in Polish?", "Warszawa", "Warsaw"),  # another spelling
    ("Marie_Curie", "curie-nf2", "What was her full married name?", "Skłodowska–Curie", "Skłodowska-Curie"),  # en dash
]


def _answer(context: str, text: str, occurrence: int) -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def build(version2: bool, train: bool) -> dict:
    data = []
    for title, context, questions, impossible in ARTICLES:
        qas = []
        for qid, question, answers in questions:
            found = [_answer(context, a, k) for a, k in answers]
            qa = {"question": question, "id": qid, "answers": found[:1] if train else found}
            if version2:
                qa["is_impossible"] = False
            qas.append(qa)
        if train:
            for name, qid, question, wrong, at in NOT_FOUND:
                if name == title:
                    qa = {"question": question, "id": qid,
                          "answers": [{"text": wrong, "answer_start": context.index(at)}]}
                    if version2:
                        qa["is_impossible"] = False
                    qas.append(qa)
        if version2:
            for qid, question, plausible in impossible:
                qas.append({"plausible_answers": [_answer(context, a, k) for a, k in plausible],
                            "question": question, "id": qid, "answers": [], "is_impossible": True})
        data.append({"title": title, "paragraphs": [{"qas": qas, "context": context}]})
    return {"version": "v2.0" if version2 else "1.1", "data": data}


def main():
    for version2, tag in ((False, "v1.1"), (True, "v2.0")):
        for train, split in ((True, "train"), (False, "dev")):
            with open(os.path.join(HERE, f"{split}-{tag}.json"), "w", encoding="utf-8") as f:
                json.dump(build(version2, train), f, ensure_ascii=False, indent=1)
                f.write("\n")


if __name__ == "__main__":
    main()
