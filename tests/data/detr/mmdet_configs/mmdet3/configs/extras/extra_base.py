custom = dict(a=dict(b=1, keep=True), l=[1, 2], t=(1, 2))
img_norm_cfg = dict(mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
