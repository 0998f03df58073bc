"""Voice: speech out (Piper; XTTS later), speech in (faster-whisper), OGG Opus notes."""
