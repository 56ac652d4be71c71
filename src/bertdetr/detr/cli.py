"""``bertdetr detr ...`` subcommands: options in, typed configs and plain arguments out."""

from __future__ import annotations

import argparse

from bertdetr.options import add_flag


def add_subcommands(commands: argparse._SubParsersAction) -> None:
    _add_convert(commands)
    _add_config(commands)
    _add_make_shapes(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_predict(commands)
    _add_attention(commands)
    _add_export(commands)


def _add_convert(commands) -> None:
    p = commands.add_parser(
        "convert",
        help="convert an mmdet (2.x/3.x) / official DETR / transformers checkpoint to ours",
        description="Read a DETR checkpoint of MMDetection 2.x or 3.x (with its config file: mmdet's own, "
        "_base_ files and all, parsed not executed), facebookresearch/detr (released or training checkpoints) "
        "or transformers (DetrForObjectDetection) and write our checkpoint directory: config.json, "
        "model.safetensors and classes.json (the labels' category ids and names).",
    )
    p.add_argument("--from", dest="source", choices=("mmdet", "official", "hf"), required=True,
                   help="checkpoint's origin")
    p.add_argument("--checkpoint", required=True,
                   help="mmdet .pth / official .pth / transformers save_pretrained directory or weights file")
    p.add_argument("--config", help="mmdet: the model's config (.py, parsed not executed, or .json; mmdet's own "
                   "config files with their _base_ tree); default: the config an mmdet checkpoint keeps in its meta")
    p.add_argument("--output", required=True, help="directory to write (config.json, model.safetensors, classes.json)")
    p.add_argument("--num-classes", "--num_classes", dest="num_classes", type=int,
                   help="foreground classes of the converted model (default: the checkpoint's)")
    add_flag(p, "--reset-head", "--reset_head", dest="reset_head", default=False,
             help="re-initialise the class FC when --num-classes differs from the checkpoint's")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialised class FC (default 0)")
    p.add_argument("--classes", choices=("coco80", "keep"),
                   help="official/hf: 'coco80' keeps the 80 COCO classes of a 92-logit head in mmdet's "
                   "order (default for official), 'keep' keeps the head as it is (default for hf); "
                   "mmdet: 'coco80' names the 80 labels as COCO's (default: the checkpoint's meta classes)")
    p.add_argument("--num-heads", "--num_heads", dest="num_heads", type=int,
                   help="official/hf: attention heads (not visible in weights; default 8 / config.json)")
    add_flag(p, "--dilation", dest="dilation", default=None,
             help="official: a DC5 model (detr-r50-dc5, detr-r101-dc5: the last stage dilated; not visible in "
             "weights; default: a training checkpoint's args.dilation, else false); hf reads its config.json")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from bertdetr.detr.convert.load import convert_checkpoint

    done = convert_checkpoint(args.source, args.checkpoint, args.output, config=args.config, classes=args.classes,
                              num_classes=args.num_classes, reset_head=args.reset_head, num_heads=args.num_heads,
                              seed=args.seed, dilation=args.dilation)
    config, num_classes = done.config, done.config.bbox_head.num_classes
    if done.config_from:
        print(f"model config: {done.config_from}")
    n = sum(p.numel() for p in done.model.parameters())
    print(f"wrote {args.output}: DETR R{config.backbone.depth}{'-DC5' if config.backbone.dilation else ''}, "
          f"{num_classes} classes, "
          f"{config.num_queries} queries, {n / 1e6:.1f}M parameters")
    if done.classes is not None:
        shown = ", ".join(done.classes[1][:5]) + (", ..." if num_classes > 5 else "")
        print(f"classes from {done.classes_from}: {shown} (classes.json)")
    else:
        print("no class names" + (" (--reset-head)" if args.reset_head else " in the checkpoint") +
              ": labels are 'class k'" + ("" if args.reset_head else "; --classes coco80 names COCO's 80"))
    return 0


def _add_config(commands) -> None:
    p = commands.add_parser(
        "config",
        help="write a preset DETR config (json) to copy and edit",
        description="Write mmdet's detr_r50_8xb2-150e_coco.py (--preset r50) or detr_r18_8xb2-500e_coco.py "
        "(--preset r18) model config as our JSON config file.",
    )
    p.add_argument("--preset", choices=("r50", "r18"), default="r50",
                   help="mmdet's detr_r50_8xb2-150e_coco or detr_r18_8xb2-500e_coco")
    p.add_argument("--num-classes", "--num_classes", dest="num_classes", type=int, default=80,
                   help="foreground classes (training replaces it by the dataset's)")
    p.add_argument("--pretrained", help="local torchvision ImageNet ResNet weights for the backbone")
    p.add_argument("--output", required=True, help="json file to write")
    add_flag(p, "--full", dest="full", default=False,
             help="write a complete training config instead (bertdetr detr train CONFIG): every field of its "
             "data, model and train sections, with what each means under _doc")
    p.set_defaults(func=_run_config)


def _run_config(args) -> int:
    from bertdetr.detr.config import DETRConfig
    from bertdetr.errors import BertDetrError

    if args.num_classes < 1:
        raise BertDetrError(f"--num-classes must be >= 1, got {args.num_classes}")
    config = getattr(DETRConfig, args.preset)(args.num_classes)
    if args.pretrained:
        config = config.replace_section("backbone", pretrained=args.pretrained)
    if args.full:
        import json

        from bertdetr.detr.train_config import full_train_setup
        from bertdetr.fileio import atomic_output

        with atomic_output(args.output, "w") as f:
            json.dump(full_train_setup(config, f"runs/detr_{args.preset}"), f, indent=1)
            f.write("\n")
    else:
        config.save(args.output)
    print(f"wrote {args.output}")
    return 0


def _add_make_shapes(commands) -> None:
    p = commands.add_parser("make-shapes", help="write a synthetic COCO-format shapes dataset",
                            description="Coloured circles, squares, triangles and crosses on textured "
                            "backgrounds, as COCO json + PNG images, for demos and tests.")
    p.add_argument("--out", required=True, help="folder to write (images/, <split>.json)")
    p.add_argument("--train-images", dest="train_images", type=int, default=200, help="training images")
    p.add_argument("--val-images", dest="val_images", type=int, default=50, help="validation images")
    p.add_argument("--min-size", dest="min_size", type=int, default=96, help="smallest image side in pixels")
    p.add_argument("--max-size", dest="max_size", type=int, default=160, help="largest image side in pixels")
    p.add_argument("--max-objects", dest="max_objects", type=int, default=4, help="shapes per image at most")
    p.add_argument("--min-object", dest="min_object", type=float, default=0.15,
                   help="smallest shape, as a fraction of the shorter image side")
    p.add_argument("--max-object", dest="max_object", type=float, default=0.45,
                   help="largest shape, as a fraction of the shorter image side")
    add_flag(p, "--class-colors", dest="class_colors",
             help="each class in its own hue (the demo's data: learned from scratch in minutes); "
             "default: random colours, so only shape tells the classes apart")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawing")
    p.set_defaults(func=_run_make_shapes)


def _run_make_shapes(args) -> int:
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes

    for split, n in (("train", args.train_images), ("val", args.val_images)):
        if n:
            cfg = ShapesConfig(num_images=n, min_size=args.min_size, max_size=args.max_size,
                               max_objects=args.max_objects, min_object=args.min_object,
                               max_object=args.max_object, seed=args.seed, class_colors=args.class_colors)
            print(f"wrote {make_shapes(args.out, split, cfg)}: {n} images")
    return 0


def _add_train(commands) -> None:
    from bertdetr.options import add_field_options, field_specs

    p = commands.add_parser("train", help="train DETR on COCO-format data (plain or under torchrun)",
                            description="Train DETR from a JSON config with sections data, model, train "
                            "(bertdetr detr config --full writes one with every field and its meaning). "
                            "Every field of the train section is also an option here, which overrides "
                            "the config file's value.")
    p.add_argument("config", help="training config (JSON)")
    add_field_options(p, "bertdetr.detr.train_config", "TrainConfig", list(field_specs("bertdetr.detr.train_config", "TrainConfig")),
                      override="train", choices={"coco_backend": ["pycocotools", "faster-coco-eval"]})
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import os

    from bertdetr.detr.train import train_detr
    from bertdetr.detr.train_config import load_train_setup
    from bertdetr.options import field_specs

    overrides = {name: getattr(args, name) for name in field_specs("bertdetr.detr.train_config", "TrainConfig")}
    summary = train_detr(load_train_setup(args.config, **overrides))
    if int(os.environ.get("RANK", "0")) == 0:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in summary["losses"].items())
        # (a resumed run that had nothing left to train took no step, so has no losses to show)
        print(f"iteration {summary['iterations']} (epoch {summary['epoch']}): "
              + (losses or "nothing left to train; the model exported again"))
        if summary["metrics"]:
            print("val: " + ", ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items()))
        print(f"model exported to {summary['export']}")
    return 0


def _add_eval(commands) -> None:
    p = commands.add_parser("eval", help="COCO mAP of a checkpoint on a COCO-format dataset",
                            description="Evaluate a DETR checkpoint directory with pycocotools (or "
                            "faster-coco-eval); writes the metrics and the COCO results json.")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory (config.json, model.safetensors)")
    p.add_argument("--ann", required=True, help="COCO annotation json")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--out", required=True, help="folder for eval_metrics.json and results.json (COCO results)")
    _add_test_scale(p)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=2,
                   help="images run together where they have one size after resizing, as in detr predict (nothing "
                   "padded: the same results as one at a time, whatever the batch size; official DETR and mmdet pad "
                   "a batch, which moves DETR's AP); default 2")
    p.add_argument("--num-workers", type=int, default=None,
                   help="processes decoding and resizing images ahead of the model (default: 4 on a GPU, "
                   "0 on a CPU); the same results")
    _add_precision(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--pipeline", metavar="{mmdet,official,bertdetr}",
                   help="test-time image pipeline: mmdet's (OpenCV), official DETR's (PIL) or ours (the "
                   "training data's); default: the one of the checkpoint's origin (pipeline.json)")
    p.add_argument("--coco-backend", dest="coco_backend", choices=("pycocotools", "faster-coco-eval"),
                   default="pycocotools", help="mAP implementation (faster-coco-eval: pip install 'bertdetr[fast-eval]')")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    import os

    from bertdetr.detr.data.coco import check_images, load_coco
    from bertdetr.detr.evaluate import coco_api, evaluate_detr, label_category_ids
    from bertdetr.detr.data.pipelines import check_pipeline
    from bertdetr.detr.weights import load_checkpoint_dir
    from bertdetr.fileio import check_writable, write_json

    from bertdetr.detr.predict import check_count, default_num_workers
    from bertdetr.devices import inference_device

    from bertdetr.detr.predict import check_scale

    check_count("batch_size", args.batch_size, 1)
    check_scale(args.test_size, args.max_size, None)  # (0 is not "the checkpoint's")
    num_workers, dtype = check_count("num_workers", args.num_workers, 0), _dtype(args)
    device = inference_device(args.device)
    check_writable(os.path.join(args.out, "eval_metrics.json"))
    coco_api(args.coco_backend)  # a missing back-end is an error before any work
    index, bad = check_images(load_coco(args.ann, args.images))
    ckpt = load_checkpoint_dir(args.checkpoint, device)
    names, names_known = ckpt.class_names, ckpt.has_classes
    category_ids, how = label_category_ids(ckpt.category_ids, names, index, names_known=names_known)
    if how != "by category id":
        print(f"the checkpoint's classes matched to the dataset's {how}")
    pipeline = check_pipeline(args.pipeline) if args.pipeline else ckpt.pipeline
    ev = evaluate_detr(ckpt.model, index, args.ann, ckpt.test_size if args.test_size is None else args.test_size,
                       ckpt.max_size if args.max_size is None else args.max_size, ckpt.config.test_cfg.max_per_img, device, args.batch_size,
                       results_path=os.path.join(args.out, "results.json"), coco_backend=args.coco_backend,
                       category_ids=category_ids, pipeline=pipeline,
                       num_workers=default_num_workers(device.type != "cpu") if num_workers is None else num_workers,
                       dtype=dtype)
    # per-class AP under the checkpoint's class names (classes.json), else the dataset's
    class_names = dict(zip(index.category_ids, index.class_names))
    if names_known:
        class_names.update(zip(category_ids, names))
    per_class = {class_names[c]: ap for c, ap in ev.per_class_ap.items()}  # NaN: no ground truth of the class
    write_json(os.path.join(args.out, "eval_metrics.json"),
               {**ev.metrics, "per_class_ap": {k: (None if v != v else v) for k, v in per_class.items()},
                "summary": ev.table, "skipped_images": bad, "coco_backend": args.coco_backend,
                "pipeline": pipeline}, indent=1)
    print("\n".join(ev.table))
    import unicodedata

    # columns as a terminal shows them: a CJK character takes two (Chinese class names line up too)
    shown = {n: sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in n) for n in per_class}
    width = max(shown.values(), default=0)
    print("per-class AP:")
    for name, ap in per_class.items():
        print(f"  {name}{' ' * (width - shown[name])}  " + ("  n/a (no ground truth)" if ap != ap else f"{ap:.4f}"))
    print(" ".join(f"{k} {v:.4f}" for k, v in ev.metrics.items()))
    return 0


def _add_precision(p) -> None:
    add_flag(p, "--bf16", dest="bf16", default=False,
             help="the model under bf16 autocast (GPUs, and CPUs that multiply bf16 in hardware): detections close "
             "to float32's, not equal")
    add_flag(p, "--fp16", dest="fp16", default=False, help="the model under fp16 autocast (GPUs without bf16)")


def _dtype(args):
    import torch

    from bertdetr.errors import BertDetrError

    if args.bf16 and args.fp16:
        raise BertDetrError("choose --bf16 or --fp16, not both")
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="detect objects in images: COCO results json and pictures",
                            description="Run a DETR checkpoint on images; write results.json (COCO format) "
                            "and, per image, a PNG with boxes, class names and scores.")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory")
    p.add_argument("images", nargs="+", help="image files, folders (their .jpg/.png/... files) or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="draw detections scoring at least this, in [0, 1] (default 0.5)")
    _add_test_scale(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--pipeline", metavar="{mmdet,official,bertdetr}",
                   help="test-time image pipeline: mmdet's (OpenCV), official DETR's (PIL) or ours (the "
                   "training data's); default: the one of the checkpoint's origin (pipeline.json)")
    _add_max_pixels(p)
    p.add_argument("--ann", help="a COCO annotation json of these images: also print the precision and recall of "
                   "the detections scoring at least --threshold (each object matched at most once at IoU >= 0.5 "
                   "with a detection of its class; a second box on it counts as wrong)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="images run together where they have one size after resizing (photos of one camera): "
                   "the same detections as one at a time, faster on a GPU (default 1)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="processes decoding and resizing images ahead of the model (default: 4 on a GPU, "
                   "0 on a CPU)")
    add_flag(p, "--save-vis", dest="save_vis", default=True,
             help="write a picture per image (--no-save-vis: results.json only, as mmdet's image_demo.py)")
    add_flag(p, "--progress", dest="progress", default=True,
             help="show a progress bar when stderr is a terminal (--no-progress: none)")
    _add_precision(p)
    p.add_argument("--font", default=None,
                   help="font file of the pictures' tags (.ttf/.otf/.ttc); default: PIL's, or for Chinese, Japanese "
                   "or Korean class names a CJK font of this machine (Noto Sans CJK, WenQuanYi, ...)")
    add_flag(p, "--resume", dest="resume", default=False,
             help="a run that stopped (its results so far in OUT/results.partial.jsonl): go on with the images not done")
    add_flag(p, "--overwrite", dest="overwrite", default=False,
             help="a run that stopped: start again, its results so far dropped")
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> int:
    import os

    from bertdetr.detr.evaluate import precision_recall
    from bertdetr.detr.predict import decoded_frames, expand_images, image_ids, predict_images
    from bertdetr.devices import inference_device

    if args.ann:
        precision_recall(args.ann, [], args.threshold)  # a broken file is an error before any work
    written = predict_images(args.checkpoint, args.images, args.out, args.threshold, args.test_size,
                             args.max_size, inference_device(args.device), args.pipeline, args.max_pixels, args.batch_size,
                             args.num_workers, args.save_vis, args.progress, args.resume, args.overwrite,
                             args.font, _dtype(args))
    print(f"wrote {len(written)} pictures and {os.path.join(args.out, 'results.json')}" if args.save_vis
          else f"wrote {os.path.join(args.out, 'results.json')}")
    if args.ann:
        import json

        from bertdetr.detr.data.pipelines import check_pipeline
        from bertdetr.detr.weights import load_pipeline

        files = expand_images(args.images)
        # the frame each image's detections are in (the decoded file's), to be scaled to the json's
        # where the file is another size than its entry, as detr eval does
        frames = decoded_frames(files, check_pipeline(args.pipeline) if args.pipeline else load_pipeline(args.checkpoint))
        ids = image_ids(files)
        with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
            # the objects of the images predicted, not of every image the file lists
            pr = precision_recall(args.ann, json.load(f), args.threshold, images=ids,
                                  decoded={i: frame for i, frame in zip(ids, frames) if frame is not None})
        print(pr.describe())
    return 0


def _point(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a point as X,Y in pixels, got {text!r}") from None
    return x, y


def _add_attention(commands) -> None:
    p = commands.add_parser("attention", help="the DETR paper's attention pictures for an image",
                            description="Decoder cross-attention of the last layer for the detections scoring "
                            "at least --threshold, and encoder self-attention at --point X,Y, as PNG overlays.")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory")
    p.add_argument("image", help="image file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=0.7,
                   help="show the detections scoring at least this, in [0, 1] (default 0.7)")
    p.add_argument("--top", type=int, default=4, help="at most this many detections")
    p.add_argument("--point", dest="points", type=_point, action="append", default=[],
                   help="X,Y pixel for an encoder self-attention picture (repeatable)")
    _add_test_scale(p)
    _add_max_pixels(p)
    p.set_defaults(func=_run_attention)


def _add_test_scale(p) -> None:
    p.add_argument("--test-size", dest="test_size", type=int, default=None,
                   help="shorter image side at inference (default: the checkpoint's test scale, recorded by "
                   "detr train and detr convert in pipeline.json; 800 for a folder that records none)")
    p.add_argument("--max-size", dest="max_size", type=int, default=None,
                   help="longer image side at most at inference (default: the checkpoint's; 1333 without one)")


def _add_max_pixels(p) -> None:
    p.add_argument("--max-pixels", dest="max_pixels", type=int, default=89_478_485,
                   help="refuse an image of more pixels, before decoding it (default: PIL's limit)")


def _run_attention(args) -> int:
    import os

    from bertdetr.detr.attention import attention_pictures
    from bertdetr.detr.weights import load_checkpoint_dir
    from bertdetr.fileio import check_writable

    from bertdetr.detr.predict import check_scale

    check_scale(args.test_size, args.max_size, args.max_pixels)  # (0 is not "the checkpoint's", nor -5 the image's fault)
    check_writable(os.path.join(args.out, "probe.png"))
    ckpt = load_checkpoint_dir(args.checkpoint)
    written = attention_pictures(ckpt.model, args.image, args.out, ckpt.class_names, args.threshold, args.points,
                                 args.top, ckpt.test_size if args.test_size is None else args.test_size,
                                 ckpt.max_size if args.max_size is None else args.max_size, args.max_pixels)
    print(f"wrote {len(written)} pictures to {args.out}" + ("" if written else
          " (no detection reached --threshold and no --point given)"))
    return 0


def _add_export(commands) -> None:
    p = commands.add_parser("export", help="export a checkpoint to ONNX, transformers or mmdet",
                            description="Write our checkpoint as ONNX (dynamic batch and image size; needs "
                            "pip install 'bertdetr[export]'), a transformers DetrForObjectDetection directory, or "
                            "an mmdet 3.x checkpoint (model.pth) with its config (config.py).")
    p.add_argument("--checkpoint", required=True, help="our checkpoint directory")
    p.add_argument("--format", required=True, metavar="{onnx,hf,mmdet}", help="what to write")
    p.add_argument("--output", required=True, help="onnx: the .onnx file; hf, mmdet: a directory")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from bertdetr.detr.convert.export import export_checkpoint

    print("wrote " + export_checkpoint(args.checkpoint, args.format, args.output, args.opset))
    return 0
