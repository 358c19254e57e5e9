"""The codec: quantisation, entropy coding, the ``.inrz`` container, quantisation-aware training.
"""

from inrkit.codec.entropy import MODEL_NAMES, decode_block, encode_block
from inrkit.codec.inrz import Header, InrzFile, Sizes, is_inrz
from inrkit.codec.qat import FineTuning, finetune
from inrkit.codec.quantize import Quantised, choose_steps, quantise

__all__ = [
    "FineTuning",
    "Header",
    "InrzFile",
    "MODEL_NAMES",
    "Quantised",
    "Sizes",
    "choose_steps",
    "decode_block",
    "encode_block",
    "finetune",
    "is_inrz",
    "quantise",
]
