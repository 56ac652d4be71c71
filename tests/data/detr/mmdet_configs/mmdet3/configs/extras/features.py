# mmengine features a user's config may lean on: a list of bases, _delete_ (at several depths),
# {{_base_.x}} (dotted), Python-style _base_.x reads, predefined {{ fileX }} variables, dict(**x),
# names assigned earlier, arithmetic and string concatenation.
_base_ = ['../detr/detr_small.py', './extra_base.py']
work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
ext = '{{fileExtname}}'
custom = dict(a=dict(c=2), l=[3], t=dict(_delete_=True, x=1))
model = dict(
    test_cfg=dict(_delete_=True, max_per_img=2 * 4),
    data_preprocessor=dict(_delete_=False, pad_size_divisor=32),
    bbox_head=dict(loss_iou=dict(_delete_=True, type='GIoULoss', loss_weight=2.0 / 1)),
    new_part=dict(_delete_=True, inner=dict(_delete_=True, v=-1)))
backbone_copy = {{_base_.model.backbone}}
pipeline_copy = dict(pipeline={{_base_.test_pipeline}}, root={{ _base_.data_root }})
norm = dict(type='Normalize', **_base_.img_norm_cfg, to_rgb=True)
depth = _base_.model.backbone.depth * 2 + 14
ann = _base_.data_root + 'annotations/instances_val2017.json'
scheduler = _base_['param_scheduler'][0]
