"""Generates the Chinese NER data here: train.txt, dev.txt, test.txt in CoNLL layout (one
character a line with its BIO tag, a blank line between sentences), from templates and name lists
written for this project. Deterministic: ``python make_ner_data.py`` rewrites the same files.

Entity types: PER (people), LOC (places), ORG (organisations). Sentences come from templates with
slots; the names of each slot are drawn from the lists below, so the same names recur (a model
learns them and their contexts quickly: the data is for tests and the README's walk-through, not
for measuring a real NER model).
"""

import os
import random

PER = ["张伟", "刘芳", "王磊", "李娜", "陈静", "赵强", "孙丽", "周杰", "吴敏", "郑浩", "黄晓明", "林小红",
       "马东", "何平", "高远", "罗兰", "梁文", "宋佳", "唐宁", "许晴"]
LOC = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "昆明", "大理", "丽江", "西安", "武汉",
       "黄山", "云南", "四川", "青岛", "苏州", "厦门"]
ORG = ["北京大学", "清华大学", "人民医院", "中国银行", "市图书馆", "气象局", "第一中学", "新华书店",
       "红星工厂", "长江公司", "博物馆", "电视台", "科学院", "足球俱乐部"]
TEMPLATES = [
    "{PER}昨天去了{LOC}。",
    "{PER}在{ORG}工作了三年。",
    "{ORG}的总部设在{LOC}。",
    "听说{PER}和{PER}下个月要去{LOC}旅行。",
    "{LOC}的天气最近很好。",
    "今天{ORG}发布了新的消息。",
    "{PER}是{ORG}的老师。",
    "我们在{LOC}见到了{PER}。",
    "这本书是{PER}写的，很受欢迎。",
    "{PER}从{LOC}回来以后，加入了{ORG}。",
    "明天上午{ORG}要在{LOC}开会。",
    "他们一家人都很喜欢{LOC}的小吃。",
    "{PER}给{PER}打了一个电话。",
    "去年{ORG}在{LOC}开了一家分店。",
    "今天的天气很好，大家都出去散步了。",
    "周末我在家里看了一部电影。",
]


def sentence(rng: random.Random) -> list[tuple[str, str]]:
    template = rng.choice(TEMPLATES)
    out: list[tuple[str, str]] = []
    rest = template
    while rest:
        if rest.startswith("{"):
            slot, rest = rest[1:].split("}", 1)
            name = rng.choice({"PER": PER, "LOC": LOC, "ORG": ORG}[slot])
            out += [(c, ("B-" if i == 0 else "I-") + slot) for i, c in enumerate(name)]
        else:
            out.append((rest[0], "O"))
            rest = rest[1:]
    return out


def write(path: str, sentences: list) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            f.writelines(f"{c} {t}\n" for c, t in s)
            f.write("\n")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(2026)
    for name, count in (("train", 400), ("dev", 80), ("test", 80)):
        write(os.path.join(here, f"{name}.txt"), [sentence(rng) for _ in range(count)])


if __name__ == "__main__":
    main()
