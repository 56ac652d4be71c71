"""Makes the *.resolved.json goldens beside each config: the config as the reference reader resolves it.

Run once in a throwaway venv holding the readers (never in the project's environment):
    python -m venv --system-site-packages /work/venvs/mmcfg
    /work/venvs/mmcfg/bin/pip install mmengine==0.10.7 wheel
    MMCV_WITH_OPS=0 /work/venvs/mmcfg/bin/pip install --no-build-isolation --no-deps mmcv==1.7.2
    /work/venvs/mmcfg/bin/python tests/data/detr/mmdet_configs/make_resolved.py
mmdet 3.x configs are read by mmengine's Config, 2.x ones by mmcv 1.x's (the readers those versions use).
JSON turns tuples into lists; the tests compare after the same conversion. ``detr_small.pretty.txt``
(3.x) is mmengine's ``pretty_text`` of that config, the text its checkpoints keep in ``meta['cfg']``.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    "mmdet3": ["configs/detr/detr_r50_8xb2-150e_coco.py", "configs/detr/detr_r18_8xb2-500e_coco.py",
               "configs/detr/detr_small.py", "configs/extras/features.py"],
    "mmdet2": ["configs/detr/detr_r50_8x2_150e_coco.py", "configs/detr/detr_small.py"],
}


def main():
    from mmcv import Config as MmcvConfig  # mmcv 1.x
    from mmengine.config import Config as MmengineConfig

    for tree, files in CASES.items():
        reader = MmengineConfig if tree == "mmdet3" else MmcvConfig
        for rel in files:
            path = os.path.join(HERE, tree, rel)
            cfg = reader.fromfile(path)
            d = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg._cfg_dict.to_dict()
            out = os.path.splitext(path)[0] + ".resolved.json"
            with open(out, "w", encoding="utf-8") as f:
                json.dump(d, f, indent=1, sort_keys=True)
                f.write("\n")
            print("wrote", os.path.relpath(out, HERE))
            if tree == "mmdet3" and rel.endswith("detr_small.py"):
                # what an mmengine checkpoint keeps as meta['cfg']: the resolved config as text
                pretty = os.path.splitext(path)[0] + ".pretty.txt"
                with open(pretty, "w", encoding="utf-8") as f:
                    f.write(cfg.pretty_text)
                print("wrote", os.path.relpath(pretty, HERE))


if __name__ == "__main__":
    main()
