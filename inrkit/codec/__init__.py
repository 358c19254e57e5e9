"""The codec: quantisation, entropy coding, the ``.inrz`` container, quantisation-aware training."""
