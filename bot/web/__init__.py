"""The web app: an installable PWA served by ``doppel serve`` at ``/``."""
