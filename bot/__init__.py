"""Platform adapters (console, Discord, Telegram) and the ``doppel`` command line."""
