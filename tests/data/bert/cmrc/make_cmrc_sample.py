"""Makes ``cmrc_sample_train.json`` and ``cmrc_sample_dev.json``: reading comprehension in CMRC 2018's
SQuAD-style layout over the documents of ``../zh/corpus_zh.txt`` (each document's lines joined with
no space, as Chinese text is written), with questions and answers written for this project.
Training questions have one answer; dev questions up to three (CMRC 2018's dev set has three
annotators). ``answer_start`` is the character offset of the answer's first occurrence.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# (document index, question, answers)
QUESTIONS = [
    (0, "老人们在湖边做什么？", ["打太极拳"]),
    (0, "王阿姨每天几点出门？", ["六点"]),
    (0, "早点摊前飘着什么的香味？", ["豆浆和油条"]),
    (1, "新的阅览室有多少个座位？", ["三百多个"]),
    (1, "管理员姓什么？", ["李老师", "李"]),
    (1, "图书馆几点闭馆？", ["晚上十点", "十点"]),
    (2, "上海的人口超过多少？", ["两千四百万"]),
    (2, "哪条江把上海分成两部分？", ["黄浦江"]),
    (2, "外滩对岸是哪里？", ["陆家嘴"]),
    (3, "很多公司用什么来缩短训练时间？", ["GPU集群"]),
    (3, "训练大模型需要什么？", ["大量的计算资源和电力"]),
    (4, "小明的爷爷退休前是做什么的？", ["中学语文老师", "语文老师"]),
    (4, "小明现在能写什么字？", ["楷书", "一手漂亮的楷书"]),
    (5, "老板是哪里人？", ["四川人", "四川"]),
    (5, "老板最拿手的菜是什么？", ["麻婆豆腐和水煮鱼"]),
    (6, "他们一家人去哪里旅行了？", ["云南"]),
    (6, "他们坐火车去了哪里？", ["大理和丽江"]),
    (7, "张伟在一百米短跑中的成绩是多少？", ["十一秒八"]),
    (7, "一共有多少所学校参加运动会？", ["二十多所"]),
    (8, "气温会下降多少？", ["八到十度"]),
    (9, "陈静最近开始学习什么？", ["Python"]),
    (9, "陈静在什么公司工作？", ["互联网公司", "一家互联网公司"]),
    (10, "长江全长约多少公里？", ["六千三百公里", "约六千三百公里"]),
    (10, "长江最后注入哪里？", ["东海"]),
    (11, "第二次烤蛋糕时温度调低了多少？", ["二十度"]),
    (11, "妹妹想要什么味的蛋糕？", ["巧克力味"]),
]


def documents() -> list[str]:
    with open(os.path.join(HERE, "..", "zh", "corpus_zh.txt"), encoding="utf-8") as f:
        return ["".join(block.split("\n")) for block in f.read().strip().split("\n\n")]


def main() -> None:
    docs = documents()
    for name, keep in (("train", lambda i: i % 3 != 2), ("dev", lambda i: i % 3 == 2)):
        paragraphs = {}
        for i, (d, question, answers) in enumerate(QUESTIONS):
            if not keep(i):
                continue
            context = docs[d]
            answers = answers[:1] if name == "train" else answers
            qa = {"id": f"{name}-{i}", "question": question,
                  "answers": [{"text": a, "answer_start": context.index(a)} for a in answers]}
            paragraphs.setdefault(d, {"context": context, "qas": []})["qas"].append(qa)
        data = {"version": "cmrc2018-sample", "data": [{"title": f"doc{d}", "paragraphs": [p]}
                                                        for d, p in sorted(paragraphs.items())]}
        with open(os.path.join(HERE, f"cmrc_sample_{name}.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
