"""Speech in: from the microphone to an intent, the first half of the flow.

Modules, in the order audio passes through them:

- :mod:`~assistant.speech_in.audio` — the microphone: a sounddevice input stream in its
  own thread, resampled to 16 kHz, surviving unplugging.
- :mod:`~assistant.speech_in.vad` — endpointing: where an utterance starts and ends.
- :mod:`~assistant.speech_in.echo` — is this sound the coach's own voice coming back?
- :mod:`~assistant.speech_in.recognizers` — speech to text and intent, one interface for
  every engine, narrowed to the dialog state's intents.
- :mod:`~assistant.speech_in.grammar` — intent templates to recognizer constraints.
- :mod:`~assistant.speech_in.models` — where speech models live; ``cramp-coach models``.
- :mod:`~assistant.speech_in.wav` — WAV files and resampling, for speech in and out.
"""
