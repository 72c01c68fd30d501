"""Speech in: microphone audio, endpointing, echo, recognizers, grammars, WAV files, models."""
