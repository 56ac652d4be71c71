"""Golden examples made by CLUE's own processors from this folder's files (run once; never needed
by the tests).

    git clone https://github.com/CLUEbenchmark/CLUE /tmp/CLUE
    python tests/data/bert/clue/make_goldens.py /tmp/CLUE

For each task, ``golden/<task>-<split>.jsonl``: the label list and each example (guid, text_a,
text_b, label) as CLUE makes it. The processors are those of CLUE's TF baseline,
``baselines/models/classifier_utils.py`` (what its ``run_classifier.py`` runs), and for OCNLI, which
that file lacks, of its PyTorch baseline, ``baselines/models_pytorch/classifier_pytorch/processors``.
``classifier_utils.py`` reads files through ``tf.gfile.Open`` only: a stand-in ``tensorflow``
module giving Python's ``open`` lets it run without TensorFlow (the same text either way).
"""

import importlib.util
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = {"afqmc": "AFQMCProcessor", "tnews": "TnewsProcessor", "iflytek": "iFLYTEKDataProcessor",
         "cmnli": "CMNLIProcessor", "csl": "CslProcessor", "wsc": "WSCProcessor"}


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(clue):
    tf = types.ModuleType("tensorflow")
    tf.gfile = types.SimpleNamespace(Open=lambda path, mode="r": open(path, mode, encoding="utf-8"))
    sys.modules["tensorflow"] = tf
    tf_utils = _load(os.path.join(clue, "baselines", "models", "classifier_utils.py"), "classifier_utils")
    processors = {task: getattr(tf_utils, name)() for task, name in TASKS.items()}
    sys.path.insert(0, os.path.join(clue, "baselines", "models_pytorch", "classifier_pytorch"))
    from processors.clue import clue_processors  # noqa: E402  (the PyTorch baseline's package)

    processors["ocnli"] = clue_processors["ocnli"]()
    out = os.path.join(HERE, "golden")
    os.makedirs(out, exist_ok=True)
    for task, processor in processors.items():
        data_dir = os.path.join(HERE, task)
        for split, get in (("train", processor.get_train_examples), ("dev", processor.get_dev_examples),
                           ("test", processor.get_test_examples)):
            with open(os.path.join(out, f"{task}-{split}.jsonl"), "w", encoding="utf-8") as f:
                for ex in get(data_dir):
                    f.write(json.dumps({"guid": ex.guid, "text_a": ex.text_a, "text_b": ex.text_b, "label": ex.label,
                                        "label_list": processor.get_labels()}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
