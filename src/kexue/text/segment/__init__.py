"""Chinese word segmentation from a dictionary alone — [4245] 【中文分词系列】7, with [3908] and [3924].

Modules, in the order data flows:
  dictionary  word lists with optional frequencies (bad lines → DataError with file:line)
  atoms       text → atoms (digit/Latin runs and repeated punctuation are one atom) and back
  maxprob     DAG of dictionary words + max-probability DP [3908], vectorised with numpy
  em          word frequencies from raw text by hard EM (for the frequency-less SIGHAN word lists)
  tagger      the dictionary-only neural segmenter [4245]: pseudo-sentences, S/B/M/E, CNN tagger
  viterbi     Viterbi over S/B/M/E with [4245]'s allowed transitions (and a brute-force check)
  api         Segmenter: jieba-like cut / lcut / add_word
  score       the SIGHAN `score` Perl script ported to Python (same P/R/F/OOV numbers)
  cli_api     segment_stream, train_segmenter (what `kexue segment` calls)
"""

from kexue.text.segment.api import Segmenter
from kexue.text.segment.cli_api import segment_stream, train_segmenter
from kexue.text.segment.dictionary import Dictionary, parse_dictionary, read_dictionary, write_dictionary
from kexue.text.segment.em import estimate_frequencies
from kexue.text.segment.maxprob import MaxProb
from kexue.text.segment.score import score, score_lines
from kexue.text.segment.tagger import Tagger, TaggerConfig, train_tagger
from kexue.text.segment.viterbi import viterbi

__all__ = [
    "Dictionary",
    "MaxProb",
    "Segmenter",
    "Tagger",
    "TaggerConfig",
    "estimate_frequencies",
    "parse_dictionary",
    "read_dictionary",
    "score",
    "score_lines",
    "segment_stream",
    "train_segmenter",
    "train_tagger",
    "viterbi",
    "write_dictionary",
]
