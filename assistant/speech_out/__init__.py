"""Speech out: text to speech, the voice cache, speakers."""
