"""Writes the CHID-format test files of this folder (run once; the files are committed).

The passages were written for this project in the layout of CHID's files (a JSON line of ten
candidate idioms and passages with blanks ``#idiom000000#``, the answers in ``*_answer.json``); they
are not CHID's data. They have what CLUE's reader treats specially: curly quotes, dashes and
ellipses, Latin letters and digits, several blanks in one passage, a passage longer than the
window at length 32 and one shorter with its blank past the middle. Free to use.
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
IDIOMS = ["一心一意", "三心二意", "半途而废", "画蛇添足", "守株待兔", "亡羊补牢", "对牛弹琴", "井底之蛙", "胸有成竹",
          "自相矛盾", "一举两得", "破釜沉舟"]


def candidates(*right, rng=random.Random(0)):
    """Ten candidates, the right ones among them, in a seeded order."""
    rest = [i for i in IDIOMS if i not in right]
    out = list(right) + rest[:10 - len(right)]
    rng.shuffle(out)
    return out


SETS = {
    "train": [
        (candidates("半途而废", "胸有成竹", "守株待兔"),
         ["学习外语不能#idiom000000#，每天坚持读一点，一年以后就能看懂英文报纸了。",
          "比赛前他已经练习了很多遍，所以上台的时候#idiom000001#，一点也不紧张。",
          "周末我们一起去公园散步，路上看到一位老人坐在树下钓鱼，他说自己每天都来这里，就像#idiom000009#一样等着鱼上钩。"],
         {"#idiom000000#": "半途而废", "#idiom000001#": "胸有成竹", "#idiom000009#": "守株待兔"}),
        (candidates("画蛇添足", "亡羊补牢", "一举两得"),
         ["这篇文章本来已经写得很好了，最后那段话完全是#idiom000002#。老师说：“丢了东西以后加强管理，虽然是#idiom000003#，"
          "但总比不做好。”骑车上班既能锻炼身体又能省钱，真是#idiom000004#……"],
         {"#idiom000002#": "画蛇添足", "#idiom000003#": "亡羊补牢", "#idiom000004#": "一举两得"}),
    ],
    "dev": [
        (candidates("对牛弹琴"),
         ["和他讲道理简直是#idiom000005#。"],
         {"#idiom000005#": "对牛弹琴"}),
        (candidates("井底之蛙", "一心一意"),
         ["去过很多国家以后，他才发现自己以前只是#idiom000006#——世界比想象的大得多。从那时起，他#idiom000007#地学习"
          "Python和AI，2024年终于考上了研究生。"],
         {"#idiom000006#": "井底之蛙", "#idiom000007#": "一心一意"}),
    ],
    "test": [
        (candidates("守株待兔"), ["找工作不能#idiom000008#，要主动去投简历。"], {}),
    ],
}


def main():
    for split, lines in SETS.items():
        with open(os.path.join(HERE, f"{split}.json"), "w", encoding="utf-8") as f:
            for options, content, _ in lines:
                f.write(json.dumps({"candidates": options, "content": content}, ensure_ascii=False) + "\n")
        answers = {tag: options.index(right) for options, _, given in lines for tag, right in given.items()}
        if split != "test":
            with open(os.path.join(HERE, f"{split}_answer.json"), "w", encoding="utf-8") as f:
                json.dump(answers, f, indent=1)
                f.write("\n")


if __name__ == "__main__":
    main()
