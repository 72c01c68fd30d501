"""The conversation: events, the pure dialog core, timers, prompts content, intents."""
