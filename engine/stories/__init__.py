"""Children's stories: options, prompts, safety, history, suggestions (platform-free)."""
