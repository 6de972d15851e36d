"""Title generation [5861, 6933]: a document in, a title out, on CSL and LCSTS.

Modules, in the order data flows:
  data    CSL / LCSTS readers, the character vocabulary (PAD, UNK, START, END), padded batches
  lstm    [5861]'s BiLSTM encoder, LSTM decoder, attention and copy prior (`LSTMSeq2Seq`)
  unilm   a BERT-style Transformer with the UniLM seq2seq mask, KV-cached decoding (`UniLM`)
  bert_unilm  the same fine-tuned from a user's pretrained BERT folder (`BertUniLM`, `from_bert_folder`)
  api     train_titles, load_titles, generate_titles, evaluate_titles (what `kexue titles` calls)
Metrics: `kexue.metrics.rouge_bleu` (character ROUGE-1/2/L and BLEU as bert4keras's CSL example).
"""

from kexue.text.titles.api import (
    MODELS,
    TitlesTrainConfig,
    build_model,
    evaluate_titles,
    fit_titles,
    generate,
    generate_titles,
    load_titles,
    save_titles,
    train_titles,
)
from kexue.text.titles.bert_unilm import BertUniLM, from_bert_folder, generate_bert, seq2seq_loss
from kexue.text.titles.data import (
    END,
    PAD,
    START,
    UNK,
    CharVocab,
    Pair,
    encode_pairs,
    load_pairs,
    pad_ids,
    read_csl,
    read_lcsts,
)
from kexue.text.titles.lstm import LSTMSeq2Seq, LSTMSeq2SeqConfig, copy_prior_logits, source_bag
from kexue.text.titles.unilm import UniLM, UniLMConfig, from_pretrained_bert, join_source_title, unilm_loss

__all__ = [
    "END",
    "MODELS",
    "PAD",
    "START",
    "UNK",
    "BertUniLM",
    "CharVocab",
    "LSTMSeq2Seq",
    "LSTMSeq2SeqConfig",
    "Pair",
    "TitlesTrainConfig",
    "UniLM",
    "UniLMConfig",
    "build_model",
    "copy_prior_logits",
    "encode_pairs",
    "evaluate_titles",
    "fit_titles",
    "from_bert_folder",
    "from_pretrained_bert",
    "generate",
    "generate_bert",
    "generate_titles",
    "join_source_title",
    "load_pairs",
    "load_titles",
    "pad_ids",
    "read_csl",
    "read_lcsts",
    "save_titles",
    "seq2seq_loss",
    "source_bag",
    "train_titles",
    "unilm_loss",
]
