"""Model FLOPs of BERT as ``bertdetr.bert.model`` runs it: the numerator of the MFU the benchmarks
report (``bench_bert_model.py``). Kept beside the benchmarks: no command computes it."""

from __future__ import annotations

from bertdetr.bert.model import BertConfig


def num_flops_per_sequence(config: BertConfig, seq_length: int, masked_per_seq: int, training: bool = True) -> float:
    """Matmul FLOPs (2 per multiply-add) of one sequence as this model runs it; x3 for training.

    With ``masked_per_seq`` > 0 (BertForPreTraining): the last layer computes queries, attention
    output and feed-forward at [CLS] + the masked positions only, and the MLM transform and
    vocabulary projection run at the masked positions only. With 0: the encoder alone (BertModel).
    Padding tokens count as tokens (the layers run on the padded batch).
    """
    D, I, L, T, V = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, seq_length,
                     config.vocab_size)

    def layer(q: int) -> int:  # q query positions against T key/value positions
        return 2 * (q * (2 * D * D + 2 * D * I) + T * 2 * D * D) + 2 * 2 * q * T * D

    if masked_per_seq:
        encoder = (L - 1) * layer(T) + layer(1 + masked_per_seq)
        heads = 2 * masked_per_seq * (D * D + D * V) + 2 * (D * D + 2 * D)
    else:
        encoder, heads = L * layer(T), 2 * D * D
    return float((encoder + heads) * (3 if training else 1))
