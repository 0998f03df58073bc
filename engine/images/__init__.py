"""Story pictures: what to draw (``plan``), drawing it (``diffusion`` with a model the
operator brings, ``cards`` without one) and keeping it with the story (``service``)."""
