"""Discord adapter (discord.py 2.x): DMs, slash commands, buttons, native voice messages."""
