"""Format-valid sample data for the relation-extraction and reading-comprehension examples, whose
datasets (DuIE, WebQA / SogouQA) cannot be fetched offline. Sentences come from templates over
random names, so a model can learn the patterns; numbers measured on them say the code runs, not
how well a model does on the real datasets.

Run: python examples/task_data.py {duie,webqa} FOLDER
duie:  train_data.json, dev_data.json (JSON lines {"text", "spo_list": [{"subject", "predicate",
       "object", "subject_type", "object_type"}]}) and all_50_schemas (JSON lines {"subject_type",
       "predicate", "object_type"}), the DuIE 1.0 layout the 0.11.5 examples read.
webqa: WebQA.json and SogouQA.json, each a JSON list of {"id", "question", "passages": [{"passage",
       "answer"}]}; "answer" is "" where the passage does not hold it.
"""

import json
import os
import random
import sys

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力林斌宇浩凯鹏飞晨欣怡佳琪子轩雨涵博文思远海波春梅兰志国庆东"
PLACES = ["北京", "上海", "天津", "重庆", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "长沙", "郑州", "济南",
          "青岛", "大连", "沈阳", "哈尔滨", "昆明", "贵阳", "南宁", "福州", "厦门", "合肥", "南昌", "太原", "兰州", "苏州"]
WORK_CHARS = "春夏秋冬风雨雪月山河海天星云花草城梦光影心路歌声远方故乡青年时代记忆之旅人间岁月长夜明日"
COMPANIES = ["华谊兄弟", "中影集团", "光线传媒", "博纳影业", "万达影视", "新丽传媒", "欢喜传媒", "上影集团"]

# predicate: (subject type, object type, templates with {s} and {o})
RELATIONS = {
    "作者": ("图书作品", "人物", ["《{s}》是{o}创作的小说", "{o}写了长篇小说《{s}》", "小说《{s}》的作者是{o}"]),
    "出生地": ("人物", "地点", ["{s}出生于{o}", "{s}，生于{o}", "{s}是{o}人"]),
    "出品公司": ("影视作品", "企业", ["电影《{s}》由{o}出品", "{o}出品的《{s}》上映了", "《{s}》的出品方是{o}"]),
    "导演": ("影视作品", "人物", ["《{s}》是{o}执导的电影", "{o}导演了《{s}》", "电影《{s}》由{o}执导"]),
    "妻子": ("人物", "人物", ["{s}的妻子是{o}", "{s}和妻子{o}一起出席了活动", "{o}是{s}的妻子"]),
}


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))


def work(rng: random.Random) -> str:
    return "".join(rng.choice(WORK_CHARS) for _ in range(rng.choice([2, 3, 4])))


def entity(kind: str, rng: random.Random) -> str:
    return {"人物": person, "图书作品": work, "影视作品": work}.get(kind, lambda r: r.choice(
        PLACES if kind == "地点" else COMPANIES))(rng)


def write_json_lines(path: str, records) -> None:
    """One JSON object a line, written to a temporary file and renamed into place."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    os.replace(path + ".tmp", path)


def duie_record(rng: random.Random) -> dict:
    """A text of one to three template sentences and the triples it states."""
    text, spo_list = [], []
    for predicate in rng.sample(sorted(RELATIONS), rng.choice([1, 2, 3])):
        subject_type, object_type, templates = RELATIONS[predicate]
        s, o = entity(subject_type, rng), entity(object_type, rng)
        text.append(rng.choice(templates).format(s=s, o=o))
        spo_list.append({"predicate": predicate, "object_type": object_type, "subject_type": subject_type,
                         "object": o, "subject": s})
    return {"text": "，".join(text) + "。", "spo_list": spo_list}


def duie(folder: str, n_train: int = 2000, n_dev: int = 200, seed: int = 0) -> None:
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    write_json_lines(os.path.join(folder, "train_data.json"), [duie_record(rng) for _ in range(n_train)])
    write_json_lines(os.path.join(folder, "dev_data.json"), [duie_record(rng) for _ in range(n_dev)])
    write_json_lines(os.path.join(folder, "all_50_schemas"),
                     [{"object_type": o, "predicate": p, "subject_type": s} for p, (s, o, _) in RELATIONS.items()])
    print(f"wrote {n_train} train and {n_dev} dev DuIE records to {folder}")


QUESTIONS = [  # (question template, passage template holding the answer, relation of the answer)
    ("{s}出生在哪里", "{s}出生于{o}，后来一直在那里工作。", "出生地"),
    ("《{s}》的作者是谁", "长篇小说《{s}》是{o}的代表作。", "作者"),
    ("电影《{s}》的导演是谁", "《{s}》由{o}执导，去年上映。", "导演"),
    ("{s}的妻子叫什么名字", "{s}和妻子{o}结婚多年。", "妻子"),
]


def qa_record(rng: random.Random, index: int, prefix: str) -> dict:
    """A question, one to three passages holding its answer and one or two distractors."""
    question, passage, predicate = rng.choice(QUESTIONS)
    subject_type, object_type, _ = RELATIONS[predicate]
    s, o = entity(subject_type, rng), entity(object_type, rng)
    passages = [{"passage": passage.format(s=s, o=o), "answer": o} for _ in range(rng.choice([1, 2, 3]))]
    for _ in range(rng.choice([1, 2])):
        other_q, other_p, other_r = rng.choice(QUESTIONS)
        other = other_p.format(s=entity(RELATIONS[other_r][0], rng), o=entity(RELATIONS[other_r][1], rng))
        passages.append({"passage": other, "answer": ""})
    rng.shuffle(passages)
    return {"id": f"{prefix}{index:06d}", "question": question.format(s=s), "passages": passages}


def webqa(folder: str, n_webqa: int = 1000, n_sogou: int = 600, seed: int = 0) -> None:
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for name, n, prefix in (("WebQA.json", n_webqa, "W"), ("SogouQA.json", n_sogou, "S")):
        path = os.path.join(folder, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump([qa_record(rng, i, prefix) for i in range(n)], f, ensure_ascii=False, indent=1)
        os.replace(path + ".tmp", path)
    print(f"wrote {n_webqa} WebQA and {n_sogou} SogouQA questions to {folder}")


GENERATORS = {"duie": duie, "webqa": webqa}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in GENERATORS:
        sys.exit(f"usage: python {sys.argv[0]} {{{','.join(GENERATORS)}}} FOLDER")
    GENERATORS[sys.argv[1]](sys.argv[2])
