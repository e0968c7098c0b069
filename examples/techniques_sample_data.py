#! -*- coding: utf-8 -*-
"""Small, format-valid sample data for the LIC2020, CCKS 2019 entity-linking and DGCNN QA examples.

The records are generated from templates, so a smoke run needs no download; they follow the layout of
the original datasets (file names, JSON keys, object-slot dicts, KB entries, answer lists) and nothing
more: the numbers a model reaches on them say nothing about the real tasks.

Usage: python examples/techniques_sample_data.py {lic2020_ie,lic2020_ee,ccks2019_el,webqa} OUT_DIR
"""

import json
import os
import random
import sys

PEOPLE = ['林海音', '张艺谋', '周杰伦', '王小波', '李娜', '陈凯歌', '刘慈欣', '杨紫琼', '何炅', '赵丽颖']
WORKS = ['城南旧事', '红高粱', '不能说的秘密', '黄金时代', '三体', '霸王别姬', '流浪地球', '卧虎藏龙']
ROLES = ['英子', '九儿', '路小雨', '王二', '叶文洁', '程蝶衣', '刘启', '俞秀莲']
PLACES = ['北京', '上海', '台湾', '西安', '重庆', '南京', '杭州', '成都']
COMPANIES = ['华谊兄弟', '中影集团', '光线传媒', '博纳影业']


def write_json_lines(path, records):
    """Write records one JSON object a line, atomically."""
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')
    os.replace(path + '.tmp', path)


def write_json(path, value):
    """Write one JSON document, atomically."""
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
    os.replace(path + '.tmp', path)


IE_SCHEMA = [
    {'predicate': '作者', 'subject_type': '图书作品', 'object_type': {'@value': '人物'}},
    {'predicate': '出生地', 'subject_type': '人物', 'object_type': {'@value': '地点'}},
    {'predicate': '出品公司', 'subject_type': '影视作品', 'object_type': {'@value': '企业'}},
    {'predicate': '饰演', 'subject_type': '娱乐人物', 'object_type': {'@value': '角色', 'inWork': '影视作品'}},
]


def ie_record(rng):
    """One DuIE 2.0 record: a text of one or two template sentences and its spo_list."""
    person, work, role = rng.choice(PEOPLE), rng.choice(WORKS), rng.choice(ROLES)
    place, company = rng.choice(PLACES), rng.choice(COMPANIES)
    sentences = [
        (f'《{work}》是{person}创作的小说', (work, '作者', {'@value': person})),
        (f'{person}出生于{place}', (person, '出生地', {'@value': place})),
        (f'电影《{work}》由{company}出品', (work, '出品公司', {'@value': company})),
        (f'{person}在《{work}》中饰演{role}', (person, '饰演', {'@value': role, 'inWork': work})),
    ]
    chosen = rng.sample(sentences, rng.choice([1, 2]))
    types = {s['predicate']: s for s in IE_SCHEMA}
    spo_list = [{'predicate': p, 'subject': s, 'subject_type': types[p]['subject_type'], 'object': o,
                 'object_type': {slot: types[p]['object_type'][slot] for slot in o}}
                for _, (s, p, o) in chosen]
    return {'text': '，'.join(text for text, _ in chosen) + '。', 'spo_list': spo_list}


def lic2020_ie(out_dir, n_train=48, n_dev=12, seed=0):
    """DuIE 2.0: train_data.json, dev_data.json, schema.json."""
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    write_json_lines(os.path.join(out_dir, 'schema.json'), IE_SCHEMA)
    write_json_lines(os.path.join(out_dir, 'train_data.json'), [ie_record(rng) for _ in range(n_train)])
    write_json_lines(os.path.join(out_dir, 'dev_data.json'), [ie_record(rng) for _ in range(n_dev)])


EE_SCHEMA = [
    {'event_type': '组织关系-裁员', 'role_list': [{'role': '裁员方'}, {'role': '裁员人数'}, {'role': '时间'}]},
    {'event_type': '竞赛行为-夺冠', 'role_list': [{'role': '冠军'}, {'role': '夺冠赛事'}, {'role': '时间'}]},
]


def ee_record(rng, index):
    """One DuEE record: text, id and event_list with trigger and arguments (with character offsets)."""
    if rng.random() < 0.5:
        company, number, date = rng.choice(COMPANIES), rng.choice(['200人', '一千名员工', '三成员工']), rng.choice(['3月', '去年'])
        text = f'{date}，{company}宣布裁员{number}。'
        event_type, trigger = '组织关系-裁员', '裁员'
        arguments = [('时间', date), ('裁员方', company), ('裁员人数', number)]
    else:
        person, game, date = rng.choice(PEOPLE), rng.choice(['澳网', '全运会', '亚洲杯']), rng.choice(['昨晚', '周日'])
        text = f'{person}{date}在{game}夺冠。'
        event_type, trigger = '竞赛行为-夺冠', '夺冠'
        arguments = [('冠军', person), ('时间', date), ('夺冠赛事', game)]
    return {'text': text, 'id': f'ee{index:05d}', 'event_list': [{
        'event_type': event_type, 'trigger': trigger, 'trigger_start_index': text.index(trigger),
        'arguments': [{'argument_start_index': text.index(a), 'role': r, 'argument': a, 'alias': []}
                      for r, a in arguments],
        'class': event_type.split('-')[0]}]}


def lic2020_ee(out_dir, n_train=48, n_dev=12, seed=0):
    """DuEE: train.json, dev.json, event_schema.json."""
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    write_json_lines(os.path.join(out_dir, 'event_schema.json'), EE_SCHEMA)
    write_json_lines(os.path.join(out_dir, 'train.json'), [ee_record(rng, i) for i in range(n_train)])
    write_json_lines(os.path.join(out_dir, 'dev.json'), [ee_record(rng, n_train + i) for i in range(n_dev)])


def el_kb():
    """KB entries: every person twice (a homonymous singer and writer) plus one entry per place."""
    kb, next_id = [], 10001
    for name in PEOPLE:
        for kind, job in (('Person', '歌手'), ('Person', '作家')):
            kb.append({'alias': [name], 'subject_id': str(next_id), 'subject': name, 'type': [kind],
                       'data': [{'predicate': '职业', 'object': job},
                                {'predicate': '摘要', 'object': f'{name}是一位著名{job}。'}]})
            next_id += 1
    for name in PLACES:
        kb.append({'alias': [name, name + '市'], 'subject_id': str(next_id), 'subject': name, 'type': ['Place'],
                   'data': [{'predicate': '类型', 'object': '城市'},
                            {'predicate': '摘要', 'object': f'{name}是中国的城市。'}]})
        next_id += 1
    return kb


def el_record(rng, kb, index):
    """One CCKS 2019 EL record: a sentence naming a person (singer or writer) and a place."""
    by_name = {}
    for entry in kb:
        by_name.setdefault(entry['subject'], []).append(entry)
    person, place = rng.choice(PEOPLE), rng.choice(PLACES)
    singer = rng.random() < 0.5
    text = f'{person}在{place}举办了演唱会' if singer else f'{person}在{place}签售新书'
    person_id = by_name[person][0 if singer else 1]['subject_id']
    mentions = [{'kb_id': person_id, 'mention': person, 'offset': '0'},
                {'kb_id': by_name[place][0]['subject_id'], 'mention': place, 'offset': str(text.index(place))}]
    if rng.random() < 0.2:
        text += '，歌迷很多'
        mentions.append({'kb_id': 'NIL', 'mention': '歌迷', 'offset': str(text.index('歌迷'))})
    return {'text_id': str(index), 'text': text, 'mention_data': mentions}


def ccks2019_el(out_dir, n_train=48, n_dev=12, seed=0):
    """CCKS 2019 entity linking: kb_data, train.json, develop.json."""
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    kb = el_kb()
    write_json_lines(os.path.join(out_dir, 'kb_data'), kb)
    write_json_lines(os.path.join(out_dir, 'train.json'), [el_record(rng, kb, i + 1) for i in range(n_train)])
    write_json_lines(os.path.join(out_dir, 'develop.json'),
                     [el_record(rng, kb, n_train + i + 1) for i in range(n_dev)])


def qa_record(rng):
    """One WebQA/SogouQA record: a question and passages, each with its answer ('' when absent)."""
    work, person = rng.choice(WORKS), rng.choice(PEOPLE)
    others = [p for p in PEOPLE if p != person]
    passages = [{'passage': f'《{work}》的作者是{person}，出版后广受好评。', 'answer': person},
                {'passage': f'{rng.choice(others)}和{person}都写过关于{work}的评论。', 'answer': ''},
                {'passage': f'{person}在采访中谈到了《{work}》的创作过程。', 'answer': person}]
    rng.shuffle(passages)
    return {'question': f'《{work}》的作者是谁', 'passages': passages}


def webqa(out_dir, n_train=48, n_dev=12, seed=0):
    """WebQA/SogouQA in the unified JSON layout: WebQA.json (training) and SogouQA.json (dev)."""
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, 'WebQA.json'), [qa_record(rng) for _ in range(n_train)])
    write_json(os.path.join(out_dir, 'SogouQA.json'), [qa_record(rng) for _ in range(n_dev)])


GENERATORS = {'lic2020_ie': lic2020_ie, 'lic2020_ee': lic2020_ee, 'ccks2019_el': ccks2019_el, 'webqa': webqa}

if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in GENERATORS:
        raise SystemExit(f'usage: python {sys.argv[0]} {{{",".join(GENERATORS)}}} OUT_DIR')
    GENERATORS[sys.argv[1]](sys.argv[2])
    print(f'wrote {sys.argv[1]} sample data to {sys.argv[2]}')
