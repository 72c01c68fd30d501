"""Speech out: the coach's lines rendered to audio and played so they can be cut off.

- :mod:`~assistant.speech_out.render` — a rendered line, the voice settings, the cache
  (prewarmed with the lines that open an episode) and the fallback voice.
- :mod:`~assistant.speech_out.tts` — the voices: pyttsx3 / espeak-ng in one worker
  thread, and the optional neural Piper voice.
- :mod:`~assistant.speech_out.speakers` — the one ``Speaker`` protocol; the device
  speaker, the resilient speaker that prints when the sound fails, the text trace.
"""
