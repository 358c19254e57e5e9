"""The plugin's own tests: inrkit's contract kit, run against the installed plugin, plus the
WAV specifics (exact round trip, errors naming the file) and one short fit of two tones."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from inrkit import api
from inrkit.errors import DataError
from inrkit.interfaces import Signal
from inrkit.plugins import get_registry
from inrkit.testing import SignalContract

RATE = 8000


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, width: int = 2) -> Path:
    """Write ``(frames, channels)`` integer samples as a PCM WAV of ``width`` bytes per sample."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(samples.shape[1])
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2" if width == 2 else np.uint8).tobytes())
    return path


def tones(freqs: tuple[float, ...], n: int = 2000, phase: float = 0.0) -> np.ndarray:
    """A mono chord of sines at ``freqs`` Hz, ``n`` int16 samples at 8 kHz, 80 % of full scale."""
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * f * t + phase) for f in freqs) / len(freqs)
    return np.round(0.8 * 32767 * x).astype(np.int16)[:, None]


def write_tones(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        str(write_wav(folder / "chord-a.wav", tones((220.0, 330.0, 550.0)))),
        str(write_wav(folder / "chord-b.wav", tones((262.0, 392.0, 659.0), phase=1.0))),
    ]


def audio(**options: Any) -> Signal:
    return get_registry().create("signal", "audio", options)


class TestAudio(SignalContract):
    signal = "audio"
    round_trip_atol = 1.0 / 65535 + 1e-7  # 16-bit files: one quantisation step

    @pytest.fixture
    def sources(self, tmp_path: Path) -> list[str]:
        return write_tones(tmp_path / "wav")


def test_samples_round_trip_exactly(tmp_path: Path) -> None:
    samples = np.array([[-32768, 32767], [0, -1], [1, 12345]], dtype=np.int16)
    source = write_wav(tmp_path / "edge.wav", samples, rate=44100)
    sig = audio()
    (item,) = sig.load([str(source)])
    assert item.data.shape == (3, 2) and item.data.min() == 0.0 and item.data.max() == 1.0
    (written,) = sig.save(item, item.data, tmp_path / "out")
    with wave.open(str(written), "rb") as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (44100, 2, 2)
        back = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(back, samples)


@pytest.mark.parametrize("case", ["not-wav", "zero-bytes", "no-frames", "8-bit"])
def test_unusable_files_are_data_errors_naming_them(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.wav"
    if case == "not-wav":
        path.write_text("hello, I am text")
    elif case == "zero-bytes":
        path.write_bytes(b"")
    elif case == "no-frames":
        write_wav(path, np.zeros((0, 1), dtype=np.int16))
    else:
        write_wav(path, np.full((10, 1), 128), width=1)
    with pytest.raises(DataError, match=case):
        audio().load([str(path)])


def test_no_sources_is_an_error_asking_for_files() -> None:
    with pytest.raises(DataError, match="no built-in samples"):
        audio().load([])


def test_folders_globs_names_and_options(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_wav(tmp_path / "a" / "x.wav", tones((440.0,)))
    write_wav(tmp_path / "b" / "x.wav", tones((440.0,), n=RATE))
    (tmp_path / "a" / "notes.txt").write_text("a folder's other files are skipped")
    items = audio(max_seconds=0.1).load([str(tmp_path / "a"), str(tmp_path / "b" / "*.wav")])
    assert [item.name for item in items] == ["x", "x-2"]
    assert [item.shape for item in items] == [(800,), (800,)] and items[0].meta["sample_rate"] == RATE
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([tones((440.0,))[:, 0], tones((220.0,))[:, 0]], axis=1))
    with pytest.raises(DataError, match="channels"):
        audio().load([str(tmp_path / "a"), str(stereo)])
    mixed = audio(channels="mono").load([str(tmp_path / "a"), str(stereo)])
    assert [item.channels for item in mixed] == [1, 1]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A fit this small gains nothing from threads, and on a busy machine they cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_a_siren_with_a_high_first_omega_fits_the_tones(tmp_path: Path) -> None:
    """2000 samples span [-1, 1]: a 550 Hz tone is ~140 cycles there, far above SIREN's default
    first-layer frequency (30), so the first layer needs a high omega to fit audio at all."""
    data = write_tones(tmp_path / "wav")

    def fit(activation: dict[str, object]) -> tuple[float, float]:
        config = {
            "signal": {"name": "audio"},
            "activation": {"name": "siren", **activation},
            "sharing": {"name": "separate"},
            "model": {"width": 64, "layers": 3},
            "train": {"steps": 100, "device": "cpu"},
        }
        metrics = api.fit(config, data=data, save=False).metrics
        assert metrics is not None and metrics.psnr_mean is not None and metrics.history[0].psnr is not None
        return metrics.history[0].psnr, metrics.psnr_mean

    start, high = fit({"first_omega": 300.0})
    _, default = fit({})
    # Measured (seeds 0-4): untrained ~15.5 dB, first_omega=300 43-46 dB, default omega ~15.8 dB.
    assert high >= start + 15.0, f"first_omega=300: {high:.2f} dB after 100 steps, untrained {start:.2f} dB"
    assert high >= default + 10.0, f"first_omega=300: {high:.2f} dB, default omega: {default:.2f} dB"
