"""Writes the CLUE-format test files of this folder (run once; the files are committed).

The texts were written for this project in the layout of each CLUE task's files (field names,
label values, extra fields the processors ignore, test sets without labels but with ids, "-"
labels in the NLI sets); they are not CLUE's data. Free to use.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

DATA = {
    "afqmc": {
        "train": [
            {"sentence1": "花呗怎么还款", "sentence2": "花呗在哪里还钱", "label": "1"},
            {"sentence1": "借呗可以提前还吗", "sentence2": "借呗能不能提前还款", "label": "1"},
            {"sentence1": "花呗额度怎么提高", "sentence2": "花呗分期有手续费吗", "label": "0"},
            {"sentence1": "为什么我的借呗用不了", "sentence2": "借呗怎么关闭", "label": "0"},
            {"sentence1": "双十一花呗提额在哪", "sentence2": "里可以提花呗额度", "label": "0"},
            {"sentence1": "花呗还款日是哪天", "sentence2": "花呗每个月几号还款", "label": "1"},
        ],
        "dev": [
            {"sentence1": "借呗利息怎么算", "sentence2": "借呗的利息是多少", "label": "1"},
            {"sentence1": "花呗能不能用来交电费", "sentence2": "花呗怎么开通", "label": "0"},
            {"sentence1": "余额宝转出要多久到账", "sentence2": "余额宝转出几天到", "label": "1"},
        ],
        "test": [
            {"id": 0, "sentence1": "花呗逾期了怎么办", "sentence2": "花呗晚还一天会怎样"},
            {"id": 1, "sentence1": "借呗额度为什么降低了", "sentence2": "怎么修改支付密码"},
            {"id": 2, "sentence1": "花呗账单可以分期吗", "sentence2": "花呗账单能不能分期还"},
        ],
    },
    "tnews": {
        "train": [
            {"label": "102", "label_desc": "news_entertainment", "sentence": "这部电影的女主角在发布会上谈新角色", "keywords": "电影,发布会"},
            {"label": "103", "label_desc": "news_sports", "sentence": "中国女排三比一战胜对手进入决赛", "keywords": "女排,决赛"},
            {"label": "104", "label_desc": "news_finance", "sentence": "央行宣布下调存款准备金率", "keywords": ""},
            {"label": "107", "label_desc": "news_car", "sentence": "这款新能源汽车一次充电能跑多远", "keywords": "新能源,汽车"},
            {"label": "108", "label_desc": "news_edu", "sentence": "今年高考报名人数再创新高", "keywords": "高考"},
            {"label": "109", "label_desc": "news_tech", "sentence": "国产手机芯片取得新的突破", "keywords": "芯片,手机"},
            {"label": "112", "label_desc": "news_travel", "sentence": "去云南旅游有哪些地方值得一看", "keywords": "云南,旅游"},
            {"label": "116", "label_desc": "news_game", "sentence": "这款手机游戏上线一周玩家过百万", "keywords": "游戏"},
        ],
        "dev": [
            {"label": "103", "label_desc": "news_sports", "sentence": "男篮主场大胜取得三连胜", "keywords": "男篮"},
            {"label": "109", "label_desc": "news_tech", "sentence": "人工智能如何改变我们的生活", "keywords": "人工智能"},
            {"label": "104", "label_desc": "news_finance", "sentence": "上半年居民存款增加了多少", "keywords": "存款"},
            {"label": "115", "label_desc": "news_agriculture", "sentence": "今年小麦收成怎么样", "keywords": "小麦"},
        ],
        "test": [
            {"id": 0, "sentence": "世界杯预选赛国足主场迎战对手", "keywords": "国足,世界杯"},
            {"id": 1, "sentence": "春节假期去哪里旅游人少", "keywords": ""},
            {"id": 2, "sentence": "新款电动汽车正式上市", "keywords": "汽车"},
        ],
    },
    "iflytek": {
        "train": [
            {"label": "0", "label_des": "打车", "sentence": "一款方便的打车软件，随时随地叫车，司机接单快。"},
            {"label": "1", "label_des": "地图导航", "sentence": "提供实时路况和语音导航，帮你找到最近的路线。"},
            {"label": "110", "label_des": "社区超市", "sentence": "社区超市送货上门，水果蔬菜三十分钟送到家。"},
            {"label": "118", "label_des": "其他", "sentence": "记录每天的心情，写下生活中的小事。"},
        ],
        "dev": [
            {"label": "0", "label_des": "打车", "sentence": "叫车更快，价格透明，出行更安心。"},
            {"label": "1", "label_des": "地图导航", "sentence": "离线地图，没有网络也能导航。"},
        ],
        "test": [
            {"id": 0, "sentence": "在线买菜，新鲜水果每天送到家。"},
            {"id": 1, "sentence": "一键叫车，上车就走。"},
        ],
    },
    "cmnli": {
        "train": [
            {"sentence1": "新的权利已经足够好了", "sentence2": "每个人都很喜欢最新的福利", "label": "neutral"},
            {"sentence1": "他每天早上跑步五公里", "sentence2": "他有跑步的习惯", "label": "entailment"},
            {"sentence1": "这家店晚上十点关门", "sentence2": "这家店整夜营业", "label": "contradiction"},
            {"sentence1": "会议推迟到了下周", "sentence2": "会议取消了", "label": "-"},
            {"sentence1": "她在北京工作了三年", "sentence2": "她去过北京", "label": "entailment"},
        ],
        "dev": [
            {"sentence1": "孩子们在公园里放风筝", "sentence2": "孩子们在户外", "label": "entailment"},
            {"sentence1": "火车晚点了两个小时", "sentence2": "火车准时到达", "label": "-"},
            {"sentence1": "他买了一本新书", "sentence2": "他很喜欢读书", "label": "neutral"},
        ],
        "test": [
            {"sentence1": "天下雨了，比赛暂停", "sentence2": "比赛因为天气停了下来"},
            {"sentence1": "商店里没有人", "sentence2": "商店里挤满了顾客"},
        ],
    },
    "ocnli": {
        "train": [
            {"level": "medium", "sentence1": "身上裹一件工厂发的棉大衣,手插在袖筒里", "sentence2": "身上至少一件衣服", "label": "entailment", "genre": "lit", "prem_id": "lit_1", "id": 0},
            {"level": "easy", "sentence1": "东、中、西部地区要加强多种形式的合作", "sentence2": "东部地区不需要合作", "label": "contradiction", "genre": "gov", "prem_id": "gov_1", "id": 1},
            {"level": "hard", "sentence1": "外贸经营权进一步放开", "sentence2": "外贸经营权经历了先收缩再放开的过程。", "label": "neutral", "genre": "gov", "prem_id": "gov_2", "id": 2},
            {"level": "easy", "sentence1": "他把门锁好才出门", "sentence2": "门是锁着的", "label": "entailment", "genre": "lit", "prem_id": "lit_2", "id": 3},
        ],
        "dev": [
            {"level": "easy", "sentence1": "桌上放着三个苹果", "sentence2": "桌上有水果", "label": "entailment", "genre": "lit", "prem_id": "lit_3", "id": 0},
            {"level": "hard", "sentence1": "会议开了一整天", "sentence2": "大家都很累", "label": "-", "genre": "news", "prem_id": "news_1", "id": 1},
            {"level": "medium", "sentence1": "她从来不喝咖啡", "sentence2": "她每天早上喝一杯咖啡", "label": "contradiction", "genre": "lit", "prem_id": "lit_4", "id": 2},
        ],
        "test": [
            {"level": "easy", "sentence1": "窗外下着大雪", "sentence2": "外面很冷", "genre": "lit", "prem_id": "lit_5", "id": 0},
            {"level": "easy", "sentence1": "他考上了大学", "sentence2": "他没有参加考试", "genre": "news", "prem_id": "news_2", "id": 1},
        ],
    },
    "csl": {
        "train": [
            {"id": 0, "abst": "为解决传统均匀FFT波束形成算法引起的3维声呐成像分辨率降低的问题,该文提出分区域FFT波束形成算法.", "keyword": ["水声学", "FFT", "波束形成", "3维成像声呐"], "label": "1"},
            {"id": 1, "abst": "本文研究了城市道路交通流量的预测方法,提出一种基于历史数据的模型.", "keyword": ["交通流量", "预测", "天气"], "label": "0"},
            {"id": 2, "abst": "通过对学生阅读习惯的调查,分析了阅读时间与学习成绩的关系.", "keyword": ["阅读习惯", "学习成绩"], "label": "1"},
        ],
        "dev": [
            {"id": 0, "abst": "该文提出一种新的图像去噪算法,在保持边缘的同时去除噪声.", "keyword": ["图像去噪", "边缘保持"], "label": "1"},
            {"id": 1, "abst": "研究了水稻在不同温度下的生长速度.", "keyword": ["水稻", "温度", "股票"], "label": "0"},
        ],
        "test": [
            {"id": 0, "abst": "本文分析了网络购物对城市居民消费的影响.", "keyword": ["网络购物", "消费"]},
            {"id": 1, "abst": "提出一种基于深度学习的语音识别方法.", "keyword": ["语音识别", "深度学习", "小麦"]},
        ],
    },
    "wsc": {
        "train": [
            {"target": {"span2_index": 37, "span1_index": 5, "span1_text": "床", "span2_text": "它"}, "idx": 0, "label": "false",
             "text": "这时候放在床上枕头旁边的手机响了，我感到奇怪，因为欠费已被停机两个月，现在它突然响了。"},
            {"target": {"span2_index": 37, "span1_index": 12, "span1_text": "手机", "span2_text": "它"}, "idx": 1, "label": "true",
             "text": "这时候放在床上枕头旁边的手机响了，我感到奇怪，因为欠费已被停机两个月，现在它突然响了。"},
            {"target": {"span2_index": 0, "span1_index": 5, "span1_text": "小王", "span2_text": "他"}, "idx": 2, "label": "true",
             "text": "他一进门，小王就笑了起来。"},
            {"target": {"span2_index": 10, "span1_index": 0, "span1_text": "妈妈", "span2_text": "她"}, "idx": 3, "label": "true",
             "text": "妈妈把饭做好了，然后她叫我们吃饭。"},
        ],
        "dev": [
            {"target": {"span2_index": 10, "span1_index": 0, "span1_text": "老师", "span2_text": "他"}, "idx": 0, "label": "false",
             "text": "老师表扬了小明，因为他考得很好。"},
            {"target": {"span2_index": 10, "span1_index": 5, "span1_text": "小明", "span2_text": "他"}, "idx": 1, "label": "true",
             "text": "老师表扬了小明，因为他考得很好。"},
            # overlapping spans (the "pronoun" inside the noun): CLUE's marks land where its inserts put them
            {"target": {"span2_index": 6, "span1_index": 5, "span1_text": "小明", "span2_text": "明"}, "idx": 2, "label": "false",
             "text": "老师表扬了小明，因为他考得很好。"},
        ],
        "test": [
            {"target": {"span2_index": 7, "span1_index": 0, "span1_text": "猫", "span2_text": "它"}, "idx": 0,
             "text": "猫追着老鼠跑，它跑得很快。"},
            {"target": {"span2_index": 7, "span1_index": 3, "span1_text": "老鼠", "span2_text": "它"}, "idx": 1,
             "text": "猫追着老鼠跑，它跑得很快。"},
        ],
    },
}


def main():
    for task, splits in DATA.items():
        os.makedirs(os.path.join(HERE, task), exist_ok=True)
        for split, lines in splits.items():
            with open(os.path.join(HERE, task, f"{split}.json"), "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
