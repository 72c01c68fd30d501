"""Compatibility names for code written before speech out was split by job.

New code imports from :mod:`assistant.speech_out.render` (rendered lines, voice settings,
the cache), :mod:`assistant.speech_out.tts` (the pyttsx3 and Piper voices),
:mod:`assistant.speech_out.speakers` (the speaker protocol and the real speakers) and
:mod:`assistant.speech_in.wav` (WAV files and resampling). This module only re-exports
them, so branches written against the old module still import; nothing in the package
uses it.
"""

from __future__ import annotations

from assistant.speech_in.wav import resample, write_wav
from assistant.speech_out.render import (
    CachedRenderer,
    FallbackRenderer,
    Rendered,
    Renderer,
    TTSError,
    VoiceSettings,
    create_renderer,
)
from assistant.speech_out.speakers import BLOCK_SECONDS, DeviceSpeaker, ResilientSpeaker, Speaker, TextSpeaker
from assistant.speech_out.tts import EspeakRenderer, PiperRenderer, looks_cut_short, piper_available

__all__ = [
    "BLOCK_SECONDS", "CachedRenderer", "DeviceSpeaker", "EspeakRenderer", "FallbackRenderer", "PiperRenderer",
    "Rendered", "Renderer", "ResilientSpeaker", "Speaker", "TTSError", "TextSpeaker", "VoiceSettings",
    "create_renderer", "looks_cut_short", "piper_available", "resample", "write_wav",
]
