"""Google TF checkpoint conversion, on a checkpoint written with TensorFlow under Google's variable
names. Skipped where TensorFlow is not installed (CI does not install the ``tf`` extra)."""

import json

import numpy as np
import pytest
import torch

from bertdetr.bert.model import BertConfig, BertForPreTraining, build_bert_for_pretraining
from bertdetr.cli import main

tf = pytest.importorskip("tensorflow")


def google_variables(m: BertForPreTraining) -> dict[str, np.ndarray]:
    """Our weights under the names Google's modeling.py / run_pretraining.py give them (kernels [in, out])."""
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    v = {
        "bert/embeddings/word_embeddings": sd["bert.embeddings.word_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": sd["bert.embeddings.token_type_embeddings.weight"],
        "bert/embeddings/position_embeddings": sd["bert.embeddings.position_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": sd["bert.embeddings.norm.weight"],
        "bert/embeddings/LayerNorm/beta": sd["bert.embeddings.norm.bias"],
        "bert/pooler/dense/kernel": sd["bert.pooler.dense.weight"].T,
        "bert/pooler/dense/bias": sd["bert.pooler.dense.bias"],
        "cls/predictions/transform/dense/kernel": sd["masked_lm.dense.weight"].T,
        "cls/predictions/transform/dense/bias": sd["masked_lm.dense.bias"],
        "cls/predictions/transform/LayerNorm/gamma": sd["masked_lm.norm.weight"],
        "cls/predictions/transform/LayerNorm/beta": sd["masked_lm.norm.bias"],
        "cls/predictions/output_bias": sd["masked_lm.output_bias"],
        "cls/seq_relationship/output_weights": sd["next_sentence.weight"],  # [2, D], not transposed
        "cls/seq_relationship/output_bias": sd["next_sentence.bias"],
    }
    for i in range(m.config.num_hidden_layers):
        g, o = f"bert/encoder/layer_{i}", f"bert.layers.{i}"
        w = np.split(sd[f"{o}.self_attn.in_proj_weight"], 3)
        b = np.split(sd[f"{o}.self_attn.in_proj_bias"], 3)
        for j, n in enumerate(("query", "key", "value")):
            v[f"{g}/attention/self/{n}/kernel"] = w[j].T
            v[f"{g}/attention/self/{n}/bias"] = b[j]
        v[f"{g}/attention/output/dense/kernel"] = sd[f"{o}.self_attn.out_proj.weight"].T
        v[f"{g}/attention/output/dense/bias"] = sd[f"{o}.self_attn.out_proj.bias"]
        v[f"{g}/attention/output/LayerNorm/gamma"] = sd[f"{o}.norm1.weight"]
        v[f"{g}/attention/output/LayerNorm/beta"] = sd[f"{o}.norm1.bias"]
        v[f"{g}/intermediate/dense/kernel"] = sd[f"{o}.ffn.fc1.weight"].T
        v[f"{g}/intermediate/dense/bias"] = sd[f"{o}.ffn.fc1.bias"]
        v[f"{g}/output/dense/kernel"] = sd[f"{o}.ffn.fc2.weight"].T
        v[f"{g}/output/dense/bias"] = sd[f"{o}.ffn.fc2.bias"]
        v[f"{g}/output/LayerNorm/gamma"] = sd[f"{o}.norm2.weight"]
        v[f"{g}/output/LayerNorm/beta"] = sd[f"{o}.norm2.bias"]
    return {k: np.ascontiguousarray(a) for k, a in v.items()}


def write_tf_checkpoint(prefix: str, variables: dict[str, np.ndarray]) -> None:
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])


def test_convert_google_checkpoint(tmp_path):
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=20, max_position_embeddings=10)
    torch.manual_seed(0)
    src = build_bert_for_pretraining(config).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # no zero biases or unit gammas
    release = tmp_path / "uncased_L-2_H-16_A-2"
    release.mkdir()
    variables = google_variables(src)
    # a pretraining run's checkpoint also holds Adam slots and the step counter
    variables["bert/pooler/dense/kernel/adam_m"] = np.zeros((16, 16), np.float32)
    variables["bert/pooler/dense/kernel/adam_v"] = np.zeros((16, 16), np.float32)
    variables["global_step"] = np.array(1000, np.int64)
    write_tf_checkpoint(str(release / "bert_model.ckpt"), variables)
    (release / "bert_config.json").write_text(json.dumps(config.to_google_dict()))
    (release / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(40)))

    out = tmp_path / "converted"
    assert main(["bert", "convert", "--tf-checkpoint", str(release / "bert_model.ckpt"), "--output", str(out)]) == 0
    assert (out / "vocab.txt").exists()
    ours = BertForPreTraining.from_pretrained(out)
    for (name, a), b in zip(src.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name

    # (The directory's loading by transformers is tested in test_model_parity.py; not here, as
    # importing transformers' triton dependency after TensorFlow segfaults in one process.)
    ids = torch.randint(0, 40, (2, 7))
    torch.testing.assert_close(ours.eval()(input_ids=ids), src(input_ids=ids), rtol=0, atol=0)

    # a variable with no place in the model is an error naming it
    variables["bert/encoder/layer_2/output/dense/bias"] = np.zeros(16, np.float32)
    write_tf_checkpoint(str(release / "bad.ckpt"), variables)
    assert main(["bert", "convert", "--tf-checkpoint", str(release / "bad.ckpt"), "--output", str(tmp_path / "x")]) == 2
