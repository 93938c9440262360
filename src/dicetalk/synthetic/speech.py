"""Speech of the synthetic world: espeak-ng with an identity's voice and an emotion's prosody.

espeak-ng's output is a deterministic function of its text and options (checked on every
variant used here), so the same seed always gives the same speech, hence the same mouth
coefficients. Audio is returned as mono float32 at :data:`SPEECH_SAMPLE_RATE` (16 kHz),
padded with short silences so that every clip starts and ends with a closed mouth.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from scipy.signal import resample_poly

from ..errors import InputError
from ..utils.media import SPEECH_SAMPLE_RATE
from .expressions import LEVEL_INTENSITY

ESPEAK = "espeak-ng"
ESPEAK_SAMPLE_RATE = 22050
LEAD_SILENCE = 0.2  # seconds of silence before the speech
TAIL_SILENCE = 0.25  # and after it

SENTENCES = (
    "The weather was warm and bright all afternoon.",
    "She opened the window to let the cool air in.",
    "We walked along the river until the sun went down.",
    "Please put the books back on the top shelf.",
    "I found an old photograph inside the drawer.",
    "The train to the city leaves at half past nine.",
    "He forgot his umbrella at the station again.",
    "Our neighbours painted their front door bright blue.",
    "The children built a castle out of wet sand.",
    "Could you tell me where the nearest bakery is?",
    "The meeting has been moved to Thursday morning.",
    "A small dog followed us all the way home.",
    "They planted tomatoes and beans in the garden.",
    "I never thought we would see the ocean again.",
    "The soup needs a little more salt and pepper.",
    "My brother plays the piano every evening.",
    "The museum was closed for the holiday.",
    "Do you remember the song we heard last summer?",
    "The lights went out just before midnight.",
    "She wrote a long letter to her grandmother.",
    "The road over the mountain is very narrow.",
    "We should leave before the rain starts again.",
    "Nobody knew who had left the gate open.",
    "The coffee in this little shop is wonderful.",
    "He moved to a quiet town near the coast.",
    "The package arrived three days too late.",
    "I can hear the birds singing outside.",
    "Their kitchen smells of fresh bread and lemons.",
    "The old bridge was finally repaired last year.",
    "You have to turn left at the blue house.",
    "The teacher read the story out loud to us.",
    "Who ate the last piece of chocolate cake?",
    "The boat drifted slowly toward the island.",
    "We watched the stars from the roof of the barn.",
    "This is the best news I have heard all week.",
    "The cat is sleeping on the warm blue blanket.",
    "Our flight was cancelled because of the storm.",
    "The doctor will see you in a few minutes.",
    "He painted the fence white on Sunday.",
    "I lost my keys somewhere in the park.",
)
"""Short English sentences the synthetic speakers say (a MEAD-like shared script)."""

VOICE_VARIANTS = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7"),
    "female": ("f1", "f2", "f3", "f4", "f5"),
}
ACCENTS = ("en-us", "en-gb")


@dataclass(frozen=True)
class Voice:
    """An identity's voice: espeak-ng voice and variant, base pitch (0..99), speed (wpm), amplitude."""

    accent: str
    variant: str
    pitch: int
    speed: int
    amplitude: int

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"

    def to_json(self) -> dict:
        return {**asdict(self), "name": self.name}


def sample_voice(rng: np.random.Generator) -> Voice:
    """Draw a voice: gender, accent, variant, and where in its range pitch and speed sit."""
    gender = "female" if rng.random() < 0.5 else "male"
    variants = VOICE_VARIANTS[gender]
    return Voice(
        accent=ACCENTS[int(rng.integers(len(ACCENTS)))],
        variant=variants[int(rng.integers(len(variants)))],
        pitch=int(rng.integers(30, 71)),
        speed=int(rng.integers(145, 186)),
        amplitude=int(rng.integers(55, 76)),  # headroom for loud emotions
    )


@dataclass(frozen=True)
class Prosody:
    """Relative prosody of an emotion: pitch shift (%), pitch range, rate and volume (x1 = neutral)."""

    pitch: float
    range: float
    rate: float
    volume: float

    def scaled(self, intensity: float) -> "Prosody":
        """The prosody at a fraction of full intensity (0 gives neutral speech)."""
        return Prosody(
            pitch=self.pitch * intensity,
            range=1 + (self.range - 1) * intensity,
            rate=1 + (self.rate - 1) * intensity,
            volume=1 + (self.volume - 1) * intensity,
        )

    def to_json(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


NEUTRAL_PROSODY = Prosody(pitch=0.0, range=1.0, rate=1.0, volume=1.0)
EMOTION_PROSODY = {
    "angry": Prosody(pitch=10.0, range=1.5, rate=1.1, volume=1.45),
    "contempt": Prosody(pitch=-6.0, range=0.8, rate=0.9, volume=1.0),
    "disgusted": Prosody(pitch=-10.0, range=0.9, rate=0.86, volume=1.05),
    "fear": Prosody(pitch=25.0, range=1.3, rate=1.18, volume=0.9),
    "happy": Prosody(pitch=18.0, range=1.7, rate=1.08, volume=1.2),
    "neutral": NEUTRAL_PROSODY,
    "sad": Prosody(pitch=-15.0, range=0.5, rate=0.8, volume=0.7),
    "surprised": Prosody(pitch=30.0, range=2.0, rate=1.0, volume=1.3),
}
"""Full-intensity prosody of each emotion (following the usual acoustic correlates of emotion)."""


def emotion_prosody(emotion: str | None, level: int = 1) -> Prosody:
    """Prosody of ``emotion`` at MEAD ``level``; ``None`` (unlabelled talk) is neutral."""
    if emotion is None:
        return NEUTRAL_PROSODY
    return EMOTION_PROSODY[emotion].scaled(LEVEL_INTENSITY[level])


def require_espeak() -> str:
    """Path of the espeak-ng executable, or an :class:`InputError` saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise InputError("espeak-ng is not installed; install the Debian package (sudo apt-get install espeak-ng, or `make system-packages`)")
    return path


def _ssml(text: str, prosody: Prosody) -> str:
    return (
        f'<speak><prosody pitch="{prosody.pitch:+.0f}%" range="{prosody.range * 100:.0f}%" '
        f'rate="{prosody.rate * 100:.0f}%" volume="{prosody.volume * 100:.0f}%">{escape(text)}</prosody></speak>'
    )


def synthesize(text: str, voice: Voice, prosody: Prosody = NEUTRAL_PROSODY) -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float32 at 16 kHz with silences trimmed to fixed pads."""
    executable = require_espeak()
    with tempfile.TemporaryDirectory(prefix="dicetalk-espeak-") as tmp:
        wav_path = Path(tmp) / "speech.wav"
        command = [
            executable, "-m", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed),
            "-a", str(voice.amplitude), "-w", str(wav_path), _ssml(text, prosody),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not wav_path.is_file():
            message = (result.stderr or "no output").strip().splitlines()[-1:]
            raise InputError(f"espeak-ng failed for voice {voice.name}: {' '.join(message)}")
        with wave.open(str(wav_path)) as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    if rate != SPEECH_SAMPLE_RATE:
        divisor = np.gcd(rate, SPEECH_SAMPLE_RATE)
        audio = resample_poly(audio, SPEECH_SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    return _pad_silence(audio)


def _pad_silence(audio: np.ndarray, threshold: float = 0.003) -> np.ndarray:
    """Trim espeak's own leading/trailing silence, then pad fixed silences on both sides."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size:
        audio = audio[loud[0] : loud[-1] + 1]
    lead = np.zeros(int(LEAD_SILENCE * SPEECH_SAMPLE_RATE), np.float32)
    tail = np.zeros(int(TAIL_SILENCE * SPEECH_SAMPLE_RATE), np.float32)
    return np.clip(np.concatenate([lead, audio, tail]), -1.0, 1.0).astype(np.float32)


def fit_to_frames(audio: np.ndarray, fps: float) -> tuple[np.ndarray, int]:
    """Pad or trim the tail so the audio spans a whole number of video frames (rounded)."""
    samples_per_frame = SPEECH_SAMPLE_RATE / fps
    num_frames = max(1, int(round(audio.size / samples_per_frame)))
    length = int(round(num_frames * samples_per_frame))
    if audio.size < length:
        audio = np.concatenate([audio, np.zeros(length - audio.size, np.float32)])
    return audio[:length], num_frames


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SPEECH_SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    from ..utils.atomic import atomic_path

    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm.tobytes())
    return Path(path)
