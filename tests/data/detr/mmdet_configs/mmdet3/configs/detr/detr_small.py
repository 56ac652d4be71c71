# The golden mmdet_detr_small case (ResNet-18, 2+2 layers of width 64, 10 queries, 5 classes) as a
# user would write it: the shipped R-18 config inherited and shrunk.
_base_ = './detr_r18_8xb2-500e_coco.py'
small_attn = dict(embed_dims=64, dropout=0.0)
small_ffn = dict(embed_dims=64, feedforward_channels=128, ffn_drop=0.0)
model = dict(
    num_queries=10,
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=64),
    encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=small_attn, ffn_cfg=small_ffn)),
    decoder=dict(
        num_layers=2,
        layer_cfg=dict(self_attn_cfg=small_attn, cross_attn_cfg=small_attn, ffn_cfg=small_ffn)),
    positional_encoding=dict(num_feats=32),
    bbox_head=dict(num_classes=5, embed_dims=64),
    test_cfg=dict(max_per_img=8))
