"""Offline jobs of the server process (never on the media path): composing recordings."""
