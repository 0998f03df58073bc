"""A story from a photo: the photo checked and cleaned (``photo``), described by a vision
model (``backends``), on its own scheduler worker (``service``)."""
