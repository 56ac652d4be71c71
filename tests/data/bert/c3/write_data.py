"""Writes the C3-format test files of this folder (run once; the files are committed).

The texts were written for this project in the layout of C3's files (``c3-d-*``: dialogues,
``c3-m-*``: other texts; a JSON list of [lines, questions, id]); they are not C3's data. Some
questions have fewer than four choices, one has Latin capitals (lowercased by the reader), one
answer appears twice among its choices. Free to use.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def q(question, choices, answer, **extra):
    return {"question": question, "choice": choices, "answer": answer, **extra}


DATA = {
    "d-train": [
        [["男：你明天几点去机场？", "女：上午十点，飞机是十二点的。"],
         [q("女的坐几点的飞机？", ["十点", "十二点", "两点", "八点"], "十二点")], "d1"],
        [["女：这件衣服多少钱？", "男：一百五十块，打八折。"],
         [q("他们在哪里？", ["商店", "学校", "医院"], "商店"),
          q("衣服打几折？", ["七折", "八折", "九折", "不打折"], "八折")], "d2"],
        [["男：今天下雨，我们还去公园吗？", "女：不去了，在家看电影吧。"],
         [q("他们最后决定做什么？", ["去公园", "看电影"], "看电影")], "d3"],
    ],
    "m-train": [
        [["小明每天早上七点起床，吃完早饭就去学校。", "他最喜欢的课是数学。"],
         [q("小明最喜欢什么课？", ["语文", "数学", "英语", "音乐"], "数学"),
          q("小明几点起床？", ["六点", "七点", "八点"], "七点")], "m1"],
        [["这家公司生产的CPU很受欢迎，去年卖出了一百万个。"],
         [q("这家公司卖的是什么？", ["CPU", "手机", "电脑", "汽车"], "CPU")], "m2"],
    ],
    "d-dev": [
        [["女：你周末做什么了？", "男：我和朋友去爬山了，很累。"],
         [q("男的周末做了什么？", ["爬山", "游泳", "看书", "睡觉"], "爬山")], "d4"],
    ],
    "m-dev": [
        [["今年夏天特别热，很多人都去海边游泳。"],
         [q("今年夏天怎么样？", ["很冷", "很热", "下雨多"], "很热"),
          q("人们去哪里游泳？", ["河边", "海边", "海边", "游泳馆"], "海边")], "m3"],
    ],
    "d-test": [
        [["男：请问图书馆在哪儿？", "女：一直往前走，在银行旁边。"],
         [q("图书馆在哪儿？", ["银行旁边", "学校里面", "医院对面", "公园门口"], "银行旁边", id="d-test-0")], "d5"],
    ],
    "m-test": [
        [["他每天坐地铁上班，路上要四十分钟。"],
         [q("他怎么上班？", ["坐地铁", "开车", "骑车"], "坐地铁", id="m-test-0")], "m4"],
    ],
}


def main():
    for name, docs in DATA.items():
        kind, split = name.split("-")
        with open(os.path.join(HERE, f"c3-{kind}-{split}.json"), "w", encoding="utf-8") as f:
            json.dump(docs, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
