"""Training a text model: the staged curriculum, the loop and exact resume (imports core only; image steps plug in)."""
