# The golden mmdet2_detr_small case (ResNet-18, 2+2 layers of width 64, 10 queries, 5 classes) as a
# user would write it: the shipped config inherited and shrunk.
_base_ = './detr_r50_8x2_150e_coco.py'
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    bbox_head=dict(
        num_classes=5,
        in_channels=512,
        num_query=10,
        transformer=dict(
            encoder=dict(
                num_layers=2,
                transformerlayers=dict(
                    _delete_=True,  # drop the base's feedforward_channels/ffn_dropout: ffn_cfgs instead
                    type='BaseTransformerLayer',
                    attn_cfgs=[
                        dict(type='MultiheadAttention', embed_dims=64, num_heads=8, dropout=0.0)
                    ],
                    operation_order=('self_attn', 'norm', 'ffn', 'norm'),
                    ffn_cfgs=dict(
                        type='FFN', embed_dims=64, feedforward_channels=128, num_fcs=2, ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True)))),
            decoder=dict(
                num_layers=2,
                transformerlayers=dict(
                    attn_cfgs=dict(embed_dims=64, dropout=0.0),
                    feedforward_channels=128,
                    ffn_dropout=0.0,
                    ffn_cfgs=dict(
                        type='FFN', embed_dims=64, feedforward_channels=128, num_fcs=2, ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True))))),
        positional_encoding=dict(num_feats=32)),
    test_cfg=dict(max_per_img=8))
